-- `make dev` for real: tools/dev in a scratch MC_ROOT (symlinks to this
-- checkout's folders, bin/multiconnect the binary under test, its own .env and
-- var/, so its own Postgres and Redis) on free ports. A "second shell" is a
-- process with only PATH and MC_ROOT: it must find everything in .env.
local proc = require "support.process"
local free_port = require("support.server").free_port
local host = require "mc.host"
local socket = require "socket"

local ACME = "00D5e000000AbCdEAK"
local UMBRELLA = "00D5e000000UmBrEAK" -- a Salesforce sandbox org
local LINKED = { "scripts", "sandbox", "sql", "mappings", "force-app", "tools", "Procfile" }
local USER_LINES = "# my own settings\nexport MAIL_FROM='me@example.com'\n"

local function read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

describe("make dev (tools/dev)", function()
  local root, cleanup, port, sandbox_port, dev

  -- the environment a developer's fresh shell has, plus the sanitizers' options
  local function shell_env(extra)
    local env = { PATH = os.getenv("PATH"), MC_ROOT = root }
    for _, name in ipairs({ "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" }) do env[name] = os.getenv(name) end
    for k, v in pairs(extra or {}) do env[k] = v end
    return env
  end

  -- second_shell(argv) -> proc.run's result: argv run under `env -i` in root
  local function second_shell(argv)
    local words = { "env", "-i" }
    for k, v in pairs(shell_env()) do words[#words + 1] = k .. "=" .. v end
    table.move(argv, 1, #argv, #words + 1, words)
    return proc.run(words, { cwd = root })
  end

  local function console(chunk)
    return second_shell({ "bin/multiconnect", "console", "-e", chunk })
  end

  -- start_dev(env) -> {pid, out, exited()}: tools/dev in the background
  local function start_dev(env)
    local words = {}
    for k, v in pairs(shell_env(env)) do words[#words + 1] = proc.quote(k .. "=" .. v) end
    local out, exit_path = root .. "/dev.out", root .. "/dev.exit"
    os.remove(exit_path)
    local p = io.popen(string.format("(cd %s && env -i %s tools/dev >%s 2>&1; echo $? >%s) >/dev/null 2>&1 & echo $!",
      proc.quote(root), table.concat(words, " "), proc.quote(out), proc.quote(exit_path)))
    local shell = p:read("l")
    p:close()
    local d = { out = function() return read(out) end }
    function d.exited() return tonumber(read(exit_path):match("%d+")) end
    d.pid = proc.wait_for(function()
      local q = io.popen("pgrep -P " .. shell)
      local child = q:read("l")
      q:close()
      return child or (d.exited() and "ended")
    end, 10, "tools/dev to start")
    return d
  end

  local function child(name)
    local q = io.popen("pgrep -P " .. dev.pid .. " -f 'multiconnect " .. name .. "$'")
    local pid = q:read("l")
    q:close()
    return pid
  end

  local function states()
    local r = console("for _, o in ipairs(orgs()) do print(o.org_id, o.state) end")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local out = {}
    for id, state in r.stdout:gmatch("(%w+)\t(%S+)") do out[id] = state end
    return out
  end

  setup(function()
    root, cleanup = proc.tmpdir()
    for _, name in ipairs(LINKED) do
      assert(os.execute("ln -s " .. proc.quote(host.root .. "/" .. name) .. " " .. proc.quote(root .. "/" .. name)))
    end
    assert(os.execute("mkdir -p " .. proc.quote(root .. "/bin")))
    assert(os.execute("ln -s " .. proc.quote(proc.exe) .. " " .. proc.quote(root .. "/bin/multiconnect")))
    proc.write(root .. "/.env", USER_LINES)
    port, sandbox_port = free_port(), free_port()
    dev = start_dev({ PORT = tostring(port), SANDBOX_PORT = tostring(sandbox_port) })
    proc.wait_for(function() return dev.out():find("multiconnect runs", 1, true) or dev.exited() end, 60,
      "the banner")
    assert.is_nil(dev.exited(), dev.out())
  end)

  teardown(function()
    if dev and not dev.exited() then
      os.execute("kill -TERM " .. dev.pid .. " 2>/dev/null")
      proc.wait_for(dev.exited, 20, "tools/dev to stop")
    end
    local pg_dir = read(root .. "/var/services/pg.dir"):match("[^\n]+")
    second_shell({ "tools/services", "stop" })
    -- as root the cluster may live under /tmp, outside the scratch root
    if pg_dir and pg_dir:find("^/tmp/multiconnect%-pg%.") then os.execute("rm -rf " .. proc.quote(pg_dir)) end
    cleanup()
  end)

  it("prints the URLs and the onboarding command once everything answers", function()
    local out = dev.out()
    assert.matches("app +http://localhost:" .. port .. "\n", out)
    assert.matches("health +http://localhost:" .. port .. "/health\n", out)
    assert.matches("sandbox +http://127%.0%.0%.1:" .. sandbox_port, out)
    assert.matches("dashboard http://localhost:" .. port .. "/admin (sign in with the local ADMIN_TOKEN: "
      .. "dev-admin-token-0123456789)\n", out, 1, true)
    assert.matches("\n  tools/callback install\n", out, 1, true)
  end)

  it("writes its stand-ins into .env after the user's lines, leaving out what the user set", function()
    local env = read(root .. "/.env")
    assert.equal(USER_LINES, env:sub(1, #USER_LINES))
    local block = env:match("# >>> make dev\n.-# <<< make dev\n$")
    assert.truthy(block, env)
    assert.matches("\nDATABASE_URL='postgres://[^\n]+'\n", block)
    assert.matches("\nX_BEARER_TOKEN='[^\n]+'\n", block)
    assert.matches("\nX_API_URL='http://127%.0%.0%.1:" .. sandbox_port .. "/x'\n", block)
    assert.matches("\nAPP_URL='http://localhost:" .. port .. "'\n", block)
    assert.not_matches("MAIL_FROM", block)
  end)

  it("onboards the demo orgs from a second shell: tools/callback, then active", function()
    local r = second_shell({ "tools/callback", "install" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("state: http://localhost:" .. port .. "/organizations/" .. ACME, r.stdout, 1, true)
    r = second_shell({ "tools/callback", "--environment", "sandbox", "install", UMBRELLA, "Umbrella Corporation",
      "admin@umbrella.example.sandbox" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    -- the same callback again, within the second: a new signature (no replay),
    -- and the app's 409 makes tools/callback fail with the answer on stderr
    r = second_shell({ "tools/callback", "install" })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("answered 409", r.stderr, 1, true)
    assert.matches("already onboarded", r.stderr, 1, true)
    proc.wait_for(function()
      local s = states()
      return s[ACME] == "active" and s[UMBRELLA] == "active"
    end, 60, "Acme and Umbrella to be active")
  end)

  it("stores social posts after `run jobs:social.sync` from a second shell", function()
    local r = second_shell({ "bin/multiconnect", "run", "jobs:social.sync" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    proc.wait_for(function()
      local c = console("print(sql('SELECT count(*) AS n FROM salesforce" .. ACME:lower() .. ".tweet__c')[1].n)")
      return c.code == 0 and tonumber(c.stdout:match("%d+")) > 0
    end, 60, "Acme's posts in its tweet__c")
  end)

  it("answers a second shell's console with the org list", function()
    local r = console("for _, o in ipairs(orgs()) do print(o.org_id, o.org_name, o.state) end")
    assert.equal(0, r.code, r.stderr)
    assert.matches(ACME .. "\tAcme\tactive", r.stdout, 1, true)
    assert.matches(UMBRELLA .. "\tUmbrella Corporation\tactive", r.stdout, 1, true)
  end)

  it("stops everything and exits non-zero naming the worker when the worker dies", function()
    local worker = assert(child("worker"), "no worker process under tools/dev")
    local web = assert(child("web"), "no web process under tools/dev")
    os.execute("kill -KILL " .. worker)
    local status = proc.wait_for(dev.exited, 20, "tools/dev to exit")
    assert.not_equal(0, status)
    assert.matches("make dev: worker exited with status 137 (killed by SIGKILL)", dev.out(), 1, true)
    assert.is_false(os.execute("kill -0 " .. web .. " 2>/dev/null") == true, "web still runs")
  end)

  it("refuses a busy PORT or SANDBOX_PORT before starting anything, naming it", function()
    local busy = assert(socket.bind("127.0.0.1", 0))
    local busy_port = tonumber((select(2, busy:getsockname())))
    for _, case in ipairs({ { PORT = busy_port, SANDBOX_PORT = free_port() },
                            { PORT = free_port(), SANDBOX_PORT = busy_port } }) do
      local name = case.PORT == busy_port and "PORT" or "SANDBOX_PORT"
      dev = start_dev({ PORT = tostring(case.PORT), SANDBOX_PORT = tostring(case.SANDBOX_PORT) })
      assert.equal(1, proc.wait_for(dev.exited, 20, "tools/dev to refuse " .. name))
      local out = dev.out()
      assert.matches("make dev: " .. name .. " " .. busy_port .. " is already in use", out, 1, true)
      assert.matches(name .. "=" .. (busy_port + 1) .. " make dev", out, 1, true)
      assert.not_matches("services:", out, 1, true)
    end
    busy:close()
  end)
end)
