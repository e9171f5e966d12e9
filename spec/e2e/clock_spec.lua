-- `multiconnect clock`: the real binary, two at once, against a Redis database of
-- this spec's own.
local json = require "mc.json"
local proc = require "support.process"
local daemon = require "support.daemon"
local redis_db = require "support.redis_db"

local DB = 13
local QUEUE = "clock-spec"

local PING = "return { perform = function() end }\n"
local EVERY_SECOND = [[
return {
  { name = "tick", job = "ops.ping", every = 1, queue = "clock-spec",
    args = function(t) return { t } end },
  { name = "hourly", job = "ops.ping", cron = "0 * * * *", queue = "clock-spec-hourly" },
}
]]

local project = proc.project

-- start(root, db) -> `multiconnect clock` in the background (a support.daemon);
-- an empty REDIS_TLS_URL counts as unset, so db's REDIS_URL is the one used.
local function start(root, db)
  return daemon.start({ command = "clock", root = root, env = { REDIS_URL = db.url, REDIS_TLS_URL = "" } })
end

-- stop(c, signal) -> exit status, log: ends the clock with signal
local function stop(c, signal)
  c:signal(signal)
  proc.wait_for(function() return not c:alive() end, 30, "the clock to exit on " .. signal)
  local log = c:log()
  return c:stop(), log
end

describe("multiconnect clock", function()
  local db
  before_each(function() db = redis_db.open(DB) end)
  after_each(function() db:close() end)

  it("two clocks enqueue each tick of an every-second entry exactly once, and exit 0 on SIGTERM and SIGINT", function()
    local root, cleanup = project({ ["scripts/jobs/ops/ping.lua"] = PING,
                                    ["scripts/schedule.lua"] = EVERY_SECOND })
    local a, b = start(root, db), start(root, db)
    local ok, err = pcall(function()
      proc.wait_for(function()
        return a:log():find("clock starting", 1, true) and b:log():find("clock starting", 1, true)
      end, 30, "both clocks to start")
      -- both run for at least four ticks
      proc.wait_for(function() return db.r:call("LLEN", "queue:" .. QUEUE) >= 4 end, 30, "four ticks")
    end)
    local code_a, log_a = stop(a, "TERM")
    local code_b, log_b = stop(b, "INT")
    local logs = log_a .. log_b
    cleanup()
    assert(ok, tostring(err) .. "\n" .. logs)
    assert.equal(0, code_a, logs)
    assert.equal(0, code_b, logs)
    assert.truthy(logs:find('msg="clock stopping" signal=TERM', 1, true), logs)
    assert.truthy(logs:find('msg="clock stopping" signal=INT', 1, true), logs)

    local bodies = db.r:call("LRANGE", "queue:" .. QUEUE, 0, -1)
    local ticks, seen = {}, {}
    for _, body in ipairs(bodies) do
      local job = assert(json.decode(body))
      assert.equal("ops.ping", job.class)
      assert.equal(QUEUE, job.queue)
      local t = job.args[1]
      assert.is_nil(seen[t], "tick " .. tostring(t) .. " was enqueued twice")
      seen[t] = true
      ticks[#ticks + 1] = t
    end
    assert.is_true(#ticks >= 4)
    table.sort(ticks)
    -- one job per tick second, none missing between the first and the last
    assert.equal(#ticks, ticks[#ticks] - ticks[1] + 1)
    -- and the winners' log lines add up to the jobs: the losers enqueued nothing
    local _, lines = logs:gsub('msg="clock enqueued" entry=tick', "")
    assert.equal(#ticks, lines)
    assert.equal(1, db.r:call("SISMEMBER", "queues", QUEUE))
  end)

  it("reloads a changed schedule.lua, and keeps the old one when the new one is bad", function()
    local function schedule(queue)
      return string.format('return { { name = "t", job = "ops.ping", every = 1, queue = %q } }', queue)
    end
    local root, cleanup = project({ ["scripts/jobs/ops/ping.lua"] = PING,
                                    ["scripts/schedule.lua"] = schedule("clock-spec-a") })
    local function rewrite(content)
      proc.write(root .. "/scripts/schedule.tmp", content)
      assert(os.rename(root .. "/scripts/schedule.tmp", root .. "/scripts/schedule.lua"))
    end
    local c = start(root, db)
    local ok, err = pcall(function()
      local function queued(queue) return db.r:call("LLEN", "queue:" .. queue) end
      proc.wait_for(function() return queued("clock-spec-a") >= 1 end, 30, "a job in queue a")
      rewrite("return { { name = 't', job = 'ops.missing', every = 1 } }")
      proc.wait_for(function() return c:log():find("schedule reload failed", 1, true) end, 30, "the reload error")
      local before = queued("clock-spec-a")
      proc.wait_for(function() return queued("clock-spec-a") > before end, 30, "queue a to go on")
      rewrite(schedule("clock-spec-b"))
      proc.wait_for(function() return queued("clock-spec-b") >= 1 end, 30, "a job in queue b")
    end)
    local code, log = stop(c, "TERM")
    cleanup()
    assert(ok, tostring(err) .. "\n" .. log)
    assert.equal(0, code, log)
    assert.matches("no job ops.missing", log)
    assert.matches('msg="schedule reloaded" entries=1', log)
  end)

  it("refuses a bad schedule with the entry named, exit 1", function()
    local cases = {
      { 'return { { name = "sync", job = "ops.ping", cron = "61 * * * *" } }',
        "entry 1 (sync): cron \"61 * * * *\": minute \"61\": 61 is out of range 0-59" },
      { 'return { { name = "a", job = "ops.ping", every = 5 }, { name = "b", job = "ops.ping" } }',
        "entry 2 (b): give cron or every" },
      { 'return { { name = "a", job = "ops.ping", every = 0 } }', "entry 1 (a): every must be" },
      { 'return { { name = "a", job = "ops.ping", every = 1, evry = 2 } }', "entry 1 (a): unknown field evry" },
      { 'return { { name = "a", job = "ops.nope", every = 1 } }',
        "entry 1 (a): no job ops.nope (scripts/jobs/ops/nope.lua)" },
      { 'return { { name = "a", job = "ops.ping", every = 1, queue = "bad queue" } }', "entry 1 (a): bad queue name" },
      { 'return { { name = "a", job = "ops.ping", every = 1, args = "x" } }', "entry 1 (a): args must be an array" },
      { 'return { { name = "a", job = "ops.ping", every = 1 }, { name = "a", job = "ops.ping", every = 2 } }',
        "entry 2 (a): name is used twice" },
      { 'return "nope"', "must return a list of entries" },
      { 'return { {', "schedule.lua" },
    }
    for _, case in ipairs(cases) do
      local root, cleanup = project({ ["scripts/jobs/ops/ping.lua"] = PING, ["scripts/schedule.lua"] = case[1] })
      local r = proc.mc({ "clock" }, { env = db:env({ MC_ROOT = root }) })
      cleanup()
      assert.equal(1, r.code, case[1])
      assert.truthy(r.stderr:find(case[2], 1, true), "expected " .. case[2] .. " in: " .. r.stderr)
    end
  end)

  it("says so when there is no scripts/schedule.lua", function()
    local root, cleanup = project({ ["scripts/jobs/ops/ping.lua"] = PING })
    local r = proc.mc({ "clock" }, { env = db:env({ MC_ROOT = root }) })
    cleanup()
    assert.equal(1, r.code)
    assert.matches("schedule.lua", r.stderr)
  end)

  it("--check validates without running; the project's own schedule loads", function()
    local root, cleanup = project({ ["scripts/jobs/ops/ping.lua"] = PING, ["scripts/schedule.lua"] = EVERY_SECOND })
    local r = proc.mc({ "clock", "--check" }, { env = db:env({ MC_ROOT = root }) })
    cleanup()
    assert.equal(0, r.code, r.stderr)
    assert.matches("2 entries", r.stdout)
    local own = proc.mc({ "clock", "--check" }, { env = db:env({ MC_ROOT = false }) })
    assert.equal(0, own.code, own.stderr)
    assert.matches("4 entries", own.stdout) -- the onboarding sweep, the social sync, the health watch, the prune
    -- the health watch's period is HEALTH_INTERVAL, read through config: a bad one stops the check
    local bad = proc.mc({ "clock", "--check" }, { env = db:env({ MC_ROOT = false, HEALTH_INTERVAL = "soon" }) })
    assert.equal(1, bad.code)
    assert.matches("HEALTH_INTERVAL", bad.stderr .. bad.stdout, 1, true)
  end)
end)
