-- Chaos: the project's web process while its Postgres has its backends
-- terminated and is restarted, again and again (a private server: MC_VAR in a
-- scratch folder, so no other spec sees it). Throughout, every request gets an
-- answer, fast, and the answer is one the caller can act on -- 200/404, or 503
-- while the database is away -- never a 500 or a traceback; afterwards the
-- process serves again by itself. Loopback only, bounded in time.
local host = require "mc.host"
local proc = require "support.process"
local daemon = require "support.daemon"
local server = require "support.server"
local stack = require "support.stack"
local http = require "mc.http"
local pg = require "mc.pg"
local file = require "mc.file"

local CHAOS_SECONDS = 12
local ORG = "00D5e000000ChAoSAK" -- unknown: 404 says the database answered

describe("chaos: Postgres backends terminated and the server restarted under the web process", function()
  local dir, cleanup, db_url

  local function services(...)
    local r = proc.run({ host.root .. "/tools/services", ... },
      { env = { MC_VAR = dir, DATABASE_URL = "", REDIS_URL = "" } })
    assert.equal(0, r.code, r.stderr)
    return r.stdout
  end

  setup(function()
    dir, cleanup = proc.tmpdir()
    db_url = services("start", "postgres"):match("DATABASE_URL='([^']+)'")
    assert(db_url, "the private server's URL")
  end)
  teardown(function()
    services("stop")
    cleanup()
  end)

  it("answers every request with 200, 404 or 503, never a 500, and recovers by itself", function()
    local restarting = dir .. "/restarting" -- while a background restart runs
    local port = server.free_port()
    local env = { PORT = tostring(port), WEB_BIND = "127.0.0.1", WEB_THREADS = "2", MC_RELOAD = "false",
      DATABASE_URL = db_url, REDIS_URL = (os.getenv("REDIS_URL"):gsub("/%d*$", "")) .. "/25",
      APP_URL = "http://127.0.0.1:" .. port, ADMIN_TOKEN = stack.ADMIN_TOKEN, ENCRYPTION_KEYS = stack.KEYS,
      SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret" }
    local m = proc.mc({ "migrate" }, { env = env })
    assert(m.code == 0, "migrate failed: " .. tostring(m.stdout) .. tostring(m.stderr))
    local web = daemon.start({ command = "web", root = host.root, env = env })
    finally(function() web:stop() end)
    assert.is_true(web:wait_log("msg=listening", 15), web:log())

    local base = "http://127.0.0.1:" .. port
    local auth = { Authorization = "Bearer " .. stack.ADMIN_TOKEN }
    local statuses, failures, slowest = {}, {}, 0
    local function ask(path, headers)
      local t = host.now()
      local res, err = http.get(base .. path, { headers = headers, timeout = 10 })
      slowest = math.max(slowest, host.now() - t)
      if not res then failures[#failures + 1] = path .. ": " .. err; return nil end
      statuses[res.status] = (statuses[res.status] or 0) + 1
      return res.status
    end

    local terminated, restarts, next_fault, i = 0, 0, host.now() + 1, 0
    local t0 = host.now()
    while host.now() - t0 < CHAOS_SECONDS do
      if host.now() >= next_fault then
        i = i + 1
        if i % 2 == 1 then -- every backend but the one asking
          local admin <close> = pg.connect(db_url)
          local rows = admin and admin:query("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity"
            .. " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
          if rows then terminated = terminated + rows[1].n end
        elseif not file.exists(restarting) then -- in the background: the requests go on
          -- while it stops and starts; never two at once (on a loaded machine one
          -- restart can outlast the next fault, and a stop inside a start leaves it down)
          proc.write(restarting, "")
          os.execute("(MC_VAR=" .. proc.quote(dir) .. " DATABASE_URL= REDIS_URL= "
            .. proc.quote(host.root .. "/tools/services") .. " restart postgres"
            .. " >>" .. proc.quote(dir .. "/restarts.log") .. " 2>&1; rm -f " .. proc.quote(restarting) .. ") &")
          restarts = restarts + 1
        end
        next_fault = host.now() + 1.5
      end
      ask("/organizations/" .. ORG, auth)
      ask("/health")
    end
    proc.wait_for(function() return not file.exists(restarting) end, 60, "the last restart to end")
    -- a restart that could not start the server again (a loaded machine: pg_ctl's
    -- wait ran out) leaves it down; what is tested is the web coming back once
    -- Postgres is, so it is started, on the same port, and the failure told
    local restarted = file.read(dir .. "/restarts.log") or ""
    assert.equal(db_url, services("start", "postgres"):match("DATABASE_URL='([^']+)'"), restarted)
    local back = proc.wait_for(function()
      return ask("/organizations/" .. ORG, auth) == 404 and ask("/health") == 200
    end, 20)
    local log = web:log()
    local seen = {}
    for status, n in pairs(statuses) do seen[#seen + 1] = status .. "x" .. n end
    table.sort(seen)
    print(string.format("\nchaos: %d backends terminated, %d restarts; answers %s; slowest %.2f s; no answer %d",
      terminated, restarts, table.concat(seen, " "), slowest, #failures))
    assert.same({}, failures)
    for status in pairs(statuses) do
      assert.truthy(status == 200 or status == 404 or status == 503, "answered " .. status)
    end
    assert.truthy(slowest < 5, "the slowest answer took " .. slowest .. " s")
    assert.truthy(back, "not serving again 20 s after the faults; the restarts said:\n" .. restarted)
    assert.truthy(terminated > 0 and restarts >= 3, "the faults were not injected")
    assert.is_true(web:alive())
    assert.is_nil(log:find("traceback", 1, true), log)
    assert.is_nil(log:find("status=500", 1, true), log)
  end)
end)
