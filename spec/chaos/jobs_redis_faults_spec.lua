-- Chaos: jobs while Redis drops every client's connection and pauses (CLIENT
-- KILL, CLIENT PAUSE), with the accounting of support.chaos: what goes in
-- comes out (lost = 0, unexpected = 0); a job may run twice (a fetch or a
-- settle whose reply was lost is recovered: at least once). Loopback only,
-- bounded in time; the faults hit the test Redis server for a second or two.
local chaos = require "support.chaos"
local redis = require "mc.redis"
local host = require "mc.host"
local jobs = require "mc.jobs"
local socket = require "socket"

local JOBS = 300
local CHAOS_SECONDS = 10
local DRAIN_SECONDS = 60

describe("chaos: Redis connections killed and paused", function()
  local url, r, admin

  setup(function()
    url = assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/24" -- a database of its own
    r = assert(redis.connect(url))
    admin = assert(redis.connect(url)) -- the one that injects the faults
    assert(admin:call("CLIENT", "SETNAME", "chaos-admin"))
    jobs.use(r)
    assert(r:call("FLUSHDB"))
  end)
  teardown(function()
    admin:call("CLIENT", "UNPAUSE")
    r:close()
    admin:close()
  end)

  it("loses no job and runs none it was not given", function()
    local enqueued = chaos.enqueue(JOBS)
    local live = { chaos.worker(url), chaos.worker(url) }
    local kills, pauses = 0, 0
    local t0 = host.now()
    while host.now() - t0 < CHAOS_SECONDS do
      socket.sleep(0.7)
      -- every client but this one: the workers' threads, mid-fetch or mid-settle
      local n = admin:call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
      if math.type(n) == "integer" and n > 0 then kills = kills + n end
      socket.sleep(0.7)
      if admin:call("CLIENT", "PAUSE", "1200", "ALL") == "OK" then pauses = pauses + 1 end
    end
    admin:call("CLIENT", "UNPAUSE")
    r:call("PING") -- this spec's own connection was killed too: the call reconnects it
    local report = chaos.account(r, enqueued, DRAIN_SECONDS)
    local alive = live[1]:alive() and live[2]:alive()
    for _, w in ipairs(live) do w:stop() end
    print("\n" .. chaos.summary(JOBS .. " jobs, " .. kills .. " connections killed, " .. pauses
      .. " pauses of 1.2 s", report))
    assert.is_true(alive, "a worker died of its connection's faults")
    assert.truthy(report.drained, "not drained in " .. DRAIN_SECONDS .. " s")
    assert.same({}, report.lost)
    assert.same({}, report.unexpected)
    assert.truthy(kills > 0 and pauses > 0, "no fault was injected")
    assert.equal(0, r:call("LLEN", "queue:default"))
  end)
end)
