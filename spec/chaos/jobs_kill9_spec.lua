-- Chaos: jobs under `kill -9` of their workers, Jepsen-style accounting ("what
-- goes in must come out", support.chaos). Workers are killed mid-job, again and
-- again, and replaced; then the queues are drained and checked: lost = 0 (each
-- job done, or visibly dead), unexpected = 0. Running a job twice is allowed --
-- the fetch is at least once -- and harmless because the job's step is
-- idempotent; the spec counts how often it happened. A poison job that kills
-- its worker each time is redelivered a bounded number of times, then dead,
-- without taking the jobs that died with it along. Loopback only, bounded in time.
local chaos = require "support.chaos"
local proc = require "support.process"
local redis = require "mc.redis"
local json = require "mc.json"
local host = require "mc.host"
local jobs = require "mc.jobs"
local socket = require "socket"

local JOBS = 400 -- about CHAOS_SECONDS of work for the two workers' eight threads
local CHAOS_SECONDS = 12
local KILL_EVERY = 1.2 -- seconds
local DRAIN_SECONDS = 60

describe("chaos: kill -9 of workers mid-job", function()
  local url, r

  setup(function()
    url = assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/23" -- a database of its own
    r = assert(redis.connect(url))
    jobs.use(r)
  end)
  teardown(function() r:close() end)
  before_each(function() assert(r:call("FLUSHDB")) end)

  it("loses no job and runs none it was not given", function()
    local enqueued = chaos.enqueue(JOBS)
    local live, kills = { chaos.worker(url), chaos.worker(url) }, 0
    local t0 = host.now()
    while host.now() - t0 < CHAOS_SECONDS do
      socket.sleep(KILL_EVERY)
      local victim = table.remove(live, math.random(#live))
      victim:signal("KILL")
      assert.is_true(victim:wait(5))
      victim:stop()
      kills = kills + 1
      live[#live + 1] = chaos.worker(url)
    end
    local report = chaos.account(r, enqueued, DRAIN_SECONDS)
    for _, w in ipairs(live) do w:stop() end
    print("\n" .. chaos.summary(JOBS .. " jobs, " .. kills .. " workers killed -9", report))
    assert.truthy(report.drained, "not drained in " .. DRAIN_SECONDS .. " s")
    assert.same({}, report.lost)
    assert.same({}, report.unexpected)
    assert.truthy(kills >= 5)
    assert.truthy(report.twice > 0, "no kill landed mid-job: the faults were not injected")
    assert.equal(0, r:call("LLEN", "queue:default"))
    assert.equal(0, r:call("ZCARD", "retry")) -- a kill is no failure: the job is pushed back, not retried
  end)

  it("buries a job that kills its worker each time at its third death, and runs the jobs that died with it", function()
    local poison = assert(jobs.enqueue("chaos.poison", { "poison" }))
    local enqueued = chaos.enqueue(40)
    -- a supervisor, as Heroku restarts a crashed dyno (a worker may take the poison
    -- and die before it is even seen started)
    local w, deaths = chaos.worker(url, nil, true), 0
    local buried = proc.wait_for(function()
      if not w:alive() then
        w:stop()
        deaths = deaths + 1
        w = chaos.worker(url, nil, true)
      end
      return r:call("ZCARD", "dead") >= 1 and r:call("SCARD", "chaos:done") + r:call("ZCARD", "dead") >= 41
    end, DRAIN_SECONDS)
    local report = chaos.account(r, enqueued, 5)
    w:stop()
    local dead = assert(r:call("ZRANGE", "dead", 0, -1))
    print("\n" .. chaos.summary("a poison job that killed its worker " .. deaths .. " times, and 40 others", report))
    assert.truthy(buried, "the poison job was not buried within " .. DRAIN_SECONDS .. " s")
    assert.equal(1, #dead) -- the jobs in flight with it died with it, but were not buried with it
    assert.equal(poison, json.decode(dead[1]).jid)
    assert.equal(3, deaths) -- bounded redelivery
    assert.same({}, report.lost)
    assert.same({}, report.unexpected)
  end)
end)
