-- Chaos: onboarding end to end (support.stack: web, workers and sandbox as real
-- processes, on a private Postgres server) while the faults of issue 18 land:
-- (a) workers SIGTERMed with long steps in flight, and replaced; (b) the sandbox
-- answering slowly, with 5xx, and not at all (its process stopped); (c) Postgres
-- restarted with `-m immediate` (durable, as in production: PG_DURABLE=1 keeps
-- the commits it acknowledged, which the test server's default may lose). Each
-- case onboards its own orgs through the faults, then drains and checks that
-- what went in came out: every org `active` (none lost, none stuck), exactly one
-- add-on per org in the sandbox (no duplicate), no hung process, and /health
-- answering throughout -- 200, or 503 only while Postgres is down. A sign-in a
-- fault broke is tried again by the admin, as a person would. Redis dbs 28
-- (app) and 29 (sandbox). Loopback only; each case is bounded (faults
-- FAULT_SECONDS, drain DRAIN_SECONDS: 15 s and 60 s at most in `make test`, 45 s
-- and 120 s with 20 orgs a case in `make soak`).
local stack = require "support.stack"
local proc = require "support.process"
local env_vars = require "support.env_vars"
local host = require "mc.host"
local http = require "mc.http"
local json = require "mc.json"
local crypto = require "mc.crypto"
local jobs = require "mc.jobs"
local pg = require "mc.pg"
local socket = require "socket"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

-- `make soak` (MC_SOAK=1) runs each case longer, with more orgs
local SOAK = os.getenv("MC_SOAK") == "1"
local ORGS_PER_CASE = SOAK and 20 or 8
local FAULT_SECONDS = SOAK and 45 or 15
local DRAIN_SECONDS = SOAK and 120 or 60
local SCALE = FAULT_SECONDS / 15 -- the sandbox's phases stretch with it

describe("chaos: onboarding through worker, sandbox and Postgres faults", function()
  local dir, cleanup, restore, s, db_url
  local workers = {}
  local next_org = 0

  local function services(...)
    local r = proc.run({ host.root .. "/tools/services", ... },
      { env = { MC_VAR = dir, DATABASE_URL = "", REDIS_URL = "", PG_RESTART_MODE = "immediate", PG_DURABLE = "1" } })
    assert.equal(0, r.code, r.stderr)
    return r.stdout
  end

  local function worker()
    local w = s:start_worker({ SHUTDOWN_TIMEOUT = "1", WORKER_HEARTBEAT_TTL = "2", WORKER_STRAY_GRACE = "1" })
    workers[#workers + 1] = w
    return w
  end

  setup(function()
    dir, cleanup = proc.tmpdir()
    local url = services("start", "postgres"):match("DATABASE_URL='([^']+)'")
    assert(url, "the private server's URL")
    restore = env_vars.set({ DATABASE_URL = url })
    s = stack.start({ name = "chaos_onboarding", app_db = 28, sandbox_db = 29, worker = false,
      env = { LOG_LEVEL = "warn", ONBOARDING_SWEEP_GRACE = "3", ONBOARDING_MAX_ATTEMPTS = "30",
        WORKER_CONCURRENCY = "6" },
      sandbox_env = { WEB_THREADS = "8" } }) -- stalled requests must leave room for the knobs
    db_url = s.db_url
    jobs.use(s.redis)
    worker()
    worker()
  end)
  teardown(function()
    for _, w in ipairs(workers) do pcall(w.stop, w) end
    if s then s:stop() end -- web, sandbox (and the last worker again: a stopped daemon stops twice unharmed)
    if restore then restore() end
    services("stop")
    cleanup()
  end)

  -- a fresh connection each time: the stack's own does not survive a restart
  local function states()
    local conn <close> = pg.connect(db_url)
    if not conn then return nil end
    local rows = conn:query("SELECT org_id, state, connection_id, failed_step, last_error FROM organizations")
    if not rows then return nil end
    local out = {}
    for _, r in ipairs(rows) do out[r.org_id] = r end
    return out
  end

  -- the run's figures: health answers by status, the slowest, those unanswered
  local health
  local function probe(postgres_may_be_down)
    local t = host.now()
    local res, err = http.get(s.web_url .. "/health", { timeout = 5 })
    health.slowest = math.max(health.slowest, host.now() - t)
    health.n = health.n + 1
    if not res then health.failures[#health.failures + 1] = err; return end
    health.statuses[res.status] = (health.statuses[res.status] or 0) + 1
    if res.status ~= 200 and not (res.status == 503 and postgres_may_be_down) then
      health.failures[#health.failures + 1] = res.status .. " " .. res.body
    end
  end

  local function install(n)
    local list = {}
    for _ = 1, n do
      next_org = next_org + 1
      local o = orgs.synthetic(next_org)
      list[#list + 1] = o.org_id
      local res = s:post_install({ org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username })
      assert.are.equal(202, res.status, res.body)
    end
    return list
  end

  -- run(what, fault{tick(), postgres}): installs the case's orgs, drives the
  -- fault for FAULT_SECONDS while probing /health, then drains and checks
  local function run(what, fault)
    health = { statuses = {}, slowest = 0, failures = {}, n = 0 }
    local list = install(ORGS_PER_CASE)
    local t0 = host.now()
    while host.now() - t0 < FAULT_SECONDS or (fault.finished and not fault.finished()) do
      fault.tick(host.now() - t0)
      probe(fault.postgres)
      socket.sleep(0.1)
    end
    if fault.done then fault.done() end
    -- a sign-in the fault broke (the token exchange answered 5xx, say) shows the
    -- admin an error page and leaves the org waiting for them: they open the
    -- mail's link again, as a person would after a few seconds
    -- (or, past Connect's sign-in, reloads the page that answered 503)
    local waiting, clicks = {}, 0
    local ring = assert(crypto.keyring(stack.KEYS))
    local function admin_retries(row)
      local id = row.org_id
      waiting[id] = waiting[id] or host.now()
      if host.now() - waiting[id] < 5 then return end
      waiting[id] = host.now()
      clicks = clicks + 1
      if row.state == "awaiting_app_oauth" then
        http.get(s:authenticate_url(id), { follow = 10, timeout = 10,
          headers = { ["X-Sandbox-Login"] = orgs.by_id(id).users[1].username } })
      else
        local token = ring:seal(id .. ":" .. row.connection_id, "connection_auth_complete")
        http.get(s.web_url .. "/connection_auth_complete/" .. token, { timeout = 10 })
      end
    end
    local last_sweep, seen = 0, {}
    local drained = proc.wait_for(function()
      probe(fault.postgres)
      if host.now() - last_sweep > 2 then -- the clock's cron, at a spec's pace
        jobs.enqueue("onboarding.sweep", {})
        last_sweep = host.now()
      end
      seen = states() or seen
      local all = true
      for _, id in ipairs(list) do
        local row = seen[id] or {}
        if row.state ~= "active" and row.state ~= "failed" then all = false end
        if row.state == "awaiting_app_oauth" or row.state == "awaiting_connect_oauth" then admin_retries(row)
        else waiting[id] = nil end
      end
      return all
    end, DRAIN_SECONDS)
    local active, not_active = 0, {}
    for _, id in ipairs(list) do
      local row = seen[id] or {}
      if row.state == "active" then active = active + 1
      else
        local org = s:get_org(id) or {}
        local last = org.events and org.events[#org.events] or {}
        not_active[#not_active + 1] = string.format("%s=%s (%s: %s; last event %s %s)", id, tostring(row.state),
          tostring(row.failed_step), tostring(row.last_error), tostring(last.kind), json.encode(last.details or {}))
      end
    end
    local duplicates = {}
    for _, id in ipairs(list) do
      local n = #s:addons_of(id)
      if n ~= 1 then duplicates[#duplicates + 1] = id .. " has " .. n end
    end
    local hung = {}
    for _, d in ipairs({ s.web, s.sandbox, table.unpack(workers) }) do
      if not d:alive() then hung[#hung + 1] = "exited: " .. d:log():sub(-300) end
    end
    local answers = {}
    for status, n in pairs(health.statuses) do answers[#answers + 1] = status .. "x" .. n end
    table.sort(answers)
    print(string.format("\nchaos: onboarding, %s: %d orgs, %d active, lost/stuck %d, add-ons not one %d; "
      .. "admin signed in again %d; health %s, slowest %.2f s, bad %d; %s", what, #list, active, #not_active,
      #duplicates, clicks,
      table.concat(answers, " "), health.slowest, #health.failures, fault.figures()))
    if not drained or #not_active > 0 then print(table.concat(not_active, " ") .. "\n" .. s:logs()) end
    assert.truthy(drained, "not drained in " .. DRAIN_SECONDS .. " s")
    assert.same({}, not_active)
    assert.same({}, duplicates)
    assert.same({}, health.failures)
    assert.truthy(health.slowest < 3, "the slowest /health took " .. health.slowest .. " s")
    assert.same({}, hung)
  end

  it("loses no org when workers are SIGTERMed with long steps in flight", function()
    s:knobs({ heroku = { latency = 1.5 }, connect = { latency = 1 } })
    local termed, slow_exits, slowest_exit = 0, 0, 0
    local next_kill = 2
    run("workers SIGTERMed with long steps in flight", {
      tick = function(t)
        if t < next_kill then return end
        next_kill = t + 3
        local victim = table.remove(workers, 1)
        worker() -- its replacement first, as Heroku starts the new dyno
        local t_term = host.now()
        victim:signal("TERM")
        assert.truthy(victim:wait(10), "a worker hung after SIGTERM")
        local took = host.now() - t_term
        slowest_exit = math.max(slowest_exit, took)
        if took > 5 then slow_exits = slow_exits + 1 end
        victim:stop()
        termed = termed + 1
      end,
      done = function() s:knobs({ heroku = { latency = 0 }, connect = { latency = 0 } }) end,
      figures = function()
        return string.format("%d workers SIGTERMed, the slowest gone in %.1f s", termed, slowest_exit)
      end,
    })
    assert.truthy(termed >= 4, "the faults were not injected")
    assert.equal(0, slow_exits)
  end)

  it("loses no org while the sandbox is slow, answers 5xx, then not at all", function()
    -- one phase after the other, each from its start time on, none skipped
    local PHASES = {
      { at = 0 * SCALE, knobs = { heroku = { latency = 2 }, connect = { latency = 2 }, salesforce = { latency = 1 } } },
      { at = 5 * SCALE, knobs = { heroku = { latency = 0, fail_rate = 0.5, fail_status = 503 },
        connect = { latency = 0, fail_rate = 0.5, fail_status = 502 },
        salesforce = { latency = 0, fail_rate = 0.3, fail_status = 500 } } },
      { at = 10 * SCALE, stop = true, knobs = { heroku = { fail_rate = 0 }, connect = { fail_rate = 0 },
        salesforce = { fail_rate = 0 } } },
      { at = 14 * SCALE, cont = true },
    }
    local next_phase, stopped_for = 1, 0
    local t_stop
    run(string.format("sandbox slow %d s, 5xx (30-50 %%) %d s, stopped %d s", 5 * SCALE, 5 * SCALE, 4 * SCALE), {
      tick = function(t)
        local p = PHASES[next_phase]
        if not p or t < p.at then return end
        next_phase = next_phase + 1
        if p.knobs then s:knobs(p.knobs) end
        if p.stop then -- the kernel accepts its connections; nothing answers
          s.sandbox:signal("STOP")
          t_stop = host.now()
        end
        if p.cont then
          s.sandbox:signal("CONT")
          stopped_for = host.now() - t_stop
        end
      end,
      finished = function() return next_phase > #PHASES end,
      figures = function() return string.format("sandbox stopped %.1f s", stopped_for) end,
    })
    assert.truthy(stopped_for >= 3, "the sandbox was not stopped")
  end)

  it("loses no org when Postgres is restarted with -m immediate", function()
    local restarts, next_restart = 0, 2
    run("Postgres restarted -m immediate", {
      postgres = true,
      tick = function(t)
        if t < next_restart then return end
        next_restart = t + 4
        -- in the background: /health is asked on while it goes down and comes back
        os.execute("MC_VAR=" .. proc.quote(dir) .. " DATABASE_URL= REDIS_URL= PG_RESTART_MODE=immediate "
          .. proc.quote(host.root .. "/tools/services") .. " restart postgres >/dev/null 2>&1 &")
        restarts = restarts + 1
      end,
      figures = function() return restarts .. " restarts -m immediate" end,
    })
    assert.truthy(restarts >= 3, "the faults were not injected")
  end)
end)
