-- Chaos: jobs under `kill -9` of their workers, Jepsen-style accounting ("what
-- goes in must come out"). Every job enqueued is recorded; workers are killed
-- mid-job, again and again, and replaced; then the queues are drained and
-- checked: lost = 0 (each job done, or visibly dead), unexpected = 0 (nothing
-- done that was not enqueued). Running a job twice is allowed -- the fetch is at
-- least once -- and harmless here because the job's step (SADD) is idempotent;
-- the spec counts how often it happened. A poison job that kills its worker
-- each time is redelivered a bounded number of times, then dead. Loopback only,
-- bounded in time.
local workers = require "support.worker"
local proc = require "support.process"
local redis = require "mc.redis"
local json = require "mc.json"
local host = require "mc.host"
local jobs = require "mc.jobs"
local socket = require "socket"

local JOBS = 400 -- about CHAOS_SECONDS of work for the two workers' eight threads
local CHAOS_SECONDS = 12
local KILL_EVERY = 1.2  -- seconds
local DRAIN_SECONDS = 60

-- chaos.step{id, seconds}: counts its run, works a while (the window a kill
-- lands in), then records that id as done.
local FILES = {
  ["scripts/jobs/chaos/step.lua"] = [[
    local conns = require "mc.conns"
    local _M = {}
    function _M.perform(args)
      local r = assert(conns.redis())
      assert(r:call("HINCRBY", "chaos:runs", args[1], 1))
      os.execute("sleep " .. args[2])
      assert(r:call("SADD", "chaos:done", args[1]))
      return true
    end
    return _M
  ]],
  -- kills the process that runs it, every time: a poison job
  ["scripts/jobs/chaos/poison.lua"] = [[
    local _M = {}
    function _M.perform(args)
      os.execute("kill -9 " .. require("mc.host").pid())
      os.execute("sleep 10") -- the signal lands meanwhile
      return true
    end
    return _M
  ]],
}

describe("chaos: kill -9 of workers mid-job", function()
  local url, r

  setup(function()
    url = assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/23" -- a database of its own
    r = assert(redis.connect(url))
    assert(r:call("FLUSHDB"))
    jobs.use(r)
  end)
  teardown(function() r:close() end)

  local function worker()
    return workers.start({ files = FILES, env = { REDIS_URL = url, WORKER_CONCURRENCY = "4",
      WORKER_HEARTBEAT_TTL = "2", WORKER_POLL_INTERVAL = "0.2", LOG_LEVEL = "warn" } })
  end

  -- the ids of the dead set's jobs
  local function dead_ids()
    local out = {}
    for _, payload in ipairs(assert(r:call("ZRANGE", "dead", 0, -1))) do
      out[tostring(json.decode(payload).args[1])] = true
    end
    return out
  end

  local function count(set)
    local n = 0
    for _ in pairs(set) do n = n + 1 end
    return n
  end

  it("loses no job and runs none it was not given", function()
    local enqueued = {}
    for i = 1, JOBS do
      local id = "job-" .. i
      local seconds = string.format("%.2f", 0.1 + (i % 7) * 0.05)
      assert(jobs.enqueue("chaos.step", { id, seconds }))
      enqueued[id] = true
    end

    local live, kills = { worker(), worker() }, 0
    local t0 = host.now()
    while host.now() - t0 < CHAOS_SECONDS do
      socket.sleep(KILL_EVERY)
      local victim = table.remove(live, math.random(#live))
      victim:signal("KILL")
      assert.is_true(victim:wait(5))
      victim:stop()
      kills = kills + 1
      live[#live + 1] = worker()
    end

    local done, dead = {}, {}
    local drained = proc.wait_for(function()
      done, dead = {}, dead_ids()
      for _, id in ipairs(assert(r:call("SMEMBERS", "chaos:done"))) do done[id] = true end
      for id in pairs(enqueued) do
        if not done[id] and not dead[id] then return false end
      end
      return true
    end, DRAIN_SECONDS)
    for _, w in ipairs(live) do w:stop() end

    local lost, unexpected, twice = {}, {}, 0
    for id in pairs(enqueued) do
      if not done[id] and not dead[id] then lost[#lost + 1] = id end
    end
    for id in pairs(done) do
      if not enqueued[id] then unexpected[#unexpected + 1] = id end
    end
    local runs = assert(r:call("HGETALL", "chaos:runs")) -- id, count, id, count, ...
    for i = 2, #runs, 2 do
      if tonumber(runs[i]) > 1 then twice = twice + 1 end
    end
    print(string.format("\nchaos: %d jobs, %d workers killed -9, done %d, dead %d, ran more than once %d,"
      .. " lost %d, unexpected %d", JOBS, kills, count(done), count(dead), twice, #lost, #unexpected))
    assert.truthy(drained, "not drained in " .. DRAIN_SECONDS .. " s")
    assert.same({}, lost)
    assert.same({}, unexpected)
    assert.truthy(kills >= 5)
    assert.truthy(twice > 0, "no kill landed mid-job: the faults were not injected")
    assert.equal(0, r:call("LLEN", "queue:default"))
    assert.equal(0, r:call("ZCARD", "retry")) -- a kill is no failure: the job is pushed back, not retried
  end)

  it("buries a job that kills its worker each time at its third death, and runs the jobs that died with it", function()
    assert(r:call("FLUSHDB"))
    local poison = assert(jobs.enqueue("chaos.poison", { "poison" }))
    local enqueued = {}
    for i = 1, 40 do
      enqueued["job-" .. i] = true
      assert(jobs.enqueue("chaos.step", { "job-" .. i, "0.05" }))
    end
    -- a supervisor, as Heroku restarts a crashed dyno
    local w, deaths = worker(), 0
    local buried = proc.wait_for(function()
      if not w:alive() then
        w:stop()
        deaths = deaths + 1
        w = worker()
      end
      return r:call("ZCARD", "dead") >= 1 and r:call("SCARD", "chaos:done") + r:call("ZCARD", "dead") >= 41
    end, DRAIN_SECONDS)
    w:stop()
    local dead = assert(r:call("ZRANGE", "dead", 0, -1))
    print(string.format("\nchaos: a poison job killed its worker %d times, then went to dead;"
      .. " of the 40 others, done %d, dead %d", deaths, r:call("SCARD", "chaos:done"), #dead - 1))
    assert.truthy(buried, "the poison job was not buried within " .. DRAIN_SECONDS .. " s")
    assert.equal(1, #dead) -- the jobs in flight with it died with it, but were not buried with it
    assert.equal(poison, json.decode(dead[1]).jid)
    assert.equal(3, deaths) -- bounded redelivery
    for _, id in ipairs(assert(r:call("SMEMBERS", "chaos:done"))) do assert.truthy(enqueued[id], id) end
  end)
end)
