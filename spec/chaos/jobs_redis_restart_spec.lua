-- Chaos: jobs while their Redis server is restarted, again and again -- killed
-- with SIGKILL (a crash) and stopped with SIGTERM (a maintenance restart), then
-- started again on the same port and data. A private redis-server, durable as
-- Heroku Redis is (append-only file, fsync on every write: a crash loses nothing
-- acknowledged); the accounting of support.chaos: lost = 0, unexpected = 0, a job
-- may run twice (at least once). Loopback only, bounded in time.
local chaos = require "support.chaos"
local proc = require "support.process"
local server = require "support.server"
local redis = require "mc.redis"
local host = require "mc.host"
local jobs = require "mc.jobs"
local socket = require "socket"

local JOBS = 300
local CHAOS_SECONDS = 12
local DRAIN_SECONDS = 120 -- a job whose step met the server down is retried after 15-25 s (Sidekiq's backoff)

-- answers(port) -> true when the server answers PING (not LOADING: it accepts
-- connections while it reads its append-only file back)
local function answers(port)
  local c = redis.connect("redis://127.0.0.1:" .. port .. "/0")
  if not c then return false end
  local pong = c:call("PING")
  c:close()
  return pong == "PONG"
end

-- start(dir, port) -> pid of a durable redis-server on port, its data in dir, once it answers
local function start(dir, port)
  local r = proc.run({ "redis-server", "--bind", "127.0.0.1", "--port", tostring(port), "--save", "",
    "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "yes", "--dir", dir,
    "--pidfile", dir .. "/redis.pid", "--logfile", dir .. "/redis.log" })
  assert(r.code == 0, r.stderr .. r.stdout)
  return proc.wait_for(function()
    local f = io.open(dir .. "/redis.pid")
    local n = f and f:read("n")
    if f then f:close() end
    return n and answers(port) and n
  end, 10, "redis-server to start")
end

local function running(pid) return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true end

-- stop(pid, signal): signals the server and waits for it to be gone
local function stop(pid, signal)
  os.execute("kill -" .. signal .. " " .. pid .. " 2>/dev/null")
  proc.wait_for(function() return not running(pid) end, 10, "redis-server " .. pid .. " to end")
end

describe("chaos: the Redis server restarted under the workers", function()
  local dir, cleanup, port, pid, url

  setup(function()
    dir, cleanup = proc.tmpdir()
    port = server.free_port()
    pid = start(dir, port)
    url = "redis://127.0.0.1:" .. port .. "/0"
  end)
  teardown(function()
    if pid and running(pid) then stop(pid, "KILL") end
    cleanup()
  end)

  it("loses no job and runs none it was not given", function()
    local r = assert(redis.connect(url))
    jobs.use(r)
    local enqueued = chaos.enqueue(JOBS)
    local live = { chaos.worker(url), chaos.worker(url) }
    local crashes, restarts, down = 0, 0, 0
    local t0 = host.now()
    while host.now() - t0 < CHAOS_SECONDS do
      socket.sleep(1.5)
      local signal = (crashes + restarts) % 2 == 0 and "KILL" or "TERM"
      local t = host.now()
      stop(pid, signal)
      socket.sleep(0.3) -- down a moment: the workers' calls meet a refused connection
      pid = start(dir, port)
      down = math.max(down, host.now() - t)
      if signal == "KILL" then crashes = crashes + 1 else restarts = restarts + 1 end
    end
    r:call("PING") -- reconnects this spec's connection, which each restart closed
    local report = chaos.account(r, enqueued, DRAIN_SECONDS)
    local alive = live[1]:alive() and live[2]:alive()
    for _, w in ipairs(live) do w:stop() end
    local queued = r:call("LLEN", "queue:default")
    r:close()
    print("\n" .. chaos.summary(string.format("%d jobs, Redis killed -9 %d times and restarted %d times, "
      .. "down at most %.1f s", JOBS, crashes, restarts, down), report))
    assert.is_true(alive, "a worker died of its server's restarts")
    assert.truthy(report.drained, "not drained in " .. DRAIN_SECONDS .. " s")
    assert.same({}, report.lost)
    assert.same({}, report.unexpected)
    assert.truthy(crashes >= 2 and restarts >= 2, "the faults were not injected")
    assert.equal(0, queued)
  end)
end)
