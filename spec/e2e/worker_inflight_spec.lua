-- `multiconnect worker` running many jobs in flight on one thread: jobs that wait on
-- HTTP (spec/support/http_server.lua's /delay/MS) yield to the thread's event loop.
-- Redis database 9 (the worker spec's; files run one at a time).
local workers = require "support.worker"
local proc = require "support.process"
local server = require "support.server"
local host = require "mc.host"
local json = require "mc.json"
local redis = require "mc.redis"
local jobs = require "mc.jobs"

-- spec.wait: GET /delay/<args[1]>, then append "<jid> <tag><body>" to $MARKS
local function wait_job(tag)
  return string.format([[
    local http = require "mc.http"
    local _M = {}
    function _M.perform(args, ctx)
      local res, err = http.get(os.getenv("HTTP_BASE") .. "/delay/" .. args[1])
      if not res then return nil, err end
      if args[2] == "raise" then error("exploded after the wait") end
      local f = assert(io.open(os.getenv("MARKS"), "a"))
      f:write(ctx.jid, " %s", res.body, "\n")
      f:close()
      return true
    end
    return _M
  ]], tag)
end

local JOBS = { ["scripts/jobs/spec/wait.lua"] = wait_job("") }

local r, url, base, stop_server, marks_path, marks_cleanup

local function marks()
  local f = io.open(marks_path)
  if not f then return {} end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

local function wait_marks(n, secs)
  proc.wait_for(function() return #marks() >= n end, secs or 10, n .. " line(s) in $MARKS")
end

local function worker(env)
  local e = { MARKS = marks_path, HTTP_BASE = base, WORKER_POLL_INTERVAL = "0.2",
              WORKER_CONCURRENCY = "1", REDIS_URL = url }
  for k, v in pairs(env or {}) do e[k] = v end
  return workers.start({ files = JOBS, env = e })
end

local function enqueue(n, args)
  local jids = {}
  for i = 1, n do jids[i] = assert(jobs.enqueue("spec.wait", args)) end
  return jids
end

describe("multiconnect worker, many jobs in flight per thread", function()
  setup(function()
    url = assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/9"
    r = assert(redis.connect(url))
    jobs.use(r)
    local dir
    dir, marks_cleanup = proc.tmpdir()
    marks_path = dir .. "/marks"
    base, stop_server = server.http()
  end)
  teardown(function()
    stop_server()
    marks_cleanup()
  end)
  before_each(function()
    assert(r:call("FLUSHDB"))
    os.remove(marks_path)
  end)

  it("runs 100 jobs that each wait 200 ms on HTTP at once on one thread", function()
    local w = worker()
    local t0 = host.now()
    enqueue(100, { 200 })
    wait_marks(100, 20)
    local secs = host.now() - t0
    w:stop()
    assert.is_true(secs < 5, secs .. " s") -- one after the other: 20 s
    assert.equal(100, tonumber(r:call("GET", "stat:processed")))
    for _, key in ipairs(r:call("KEYS", "inflight:*")) do assert.equal(0, r:call("LLEN", key)) end
  end)

  it("keeps one job's error to itself: the others in flight finish", function()
    local w = worker()
    enqueue(10, { 300 })
    local failing = enqueue(5, { 200, "raise" })
    wait_marks(10)
    proc.wait_for(function() return r:call("ZCARD", "retry") == 5 end, 10, "5 jobs in retry")
    w:stop()
    local retried = {}
    for _, body in ipairs(r:call("ZRANGE", "retry", 0, -1)) do
      local job = json.decode(body)
      retried[job.jid] = true
      assert.matches("exploded after the wait", job.error_message)
    end
    for _, jid in ipairs(failing) do assert.is_true(retried[jid]) end
    assert.equal(15, tonumber(r:call("GET", "stat:processed")))
  end)

  it("on SIGTERM finishes the jobs waiting in flight and exits 0", function()
    local w = worker({ SHUTDOWN_TIMEOUT = "10" })
    enqueue(20, { 1500 })
    proc.wait_for(function() return r:call("LLEN", "queue:default") == 0 end, 5, "all 20 fetched")
    w:signal("TERM")
    assert.is_true(w:wait(15))
    local status = w:exit_status()
    w:stop()
    assert.equal(0, status)
    assert.equal(20, #marks())
    assert.equal(0, r:call("LLEN", "queue:default"))
    assert.same({}, r:call("KEYS", "inflight:*"))
  end)

  it("pushes back the jobs still waiting at SHUTDOWN_TIMEOUT, each once", function()
    local w = worker({ SHUTDOWN_TIMEOUT = "0.5" })
    local jids = enqueue(20, { 5000 })
    proc.wait_for(function() return r:call("LLEN", "queue:default") == 0 end, 5, "all 20 fetched")
    w:signal("TERM")
    assert.is_true(w:wait(15))
    local status = w:exit_status()
    w:stop()
    assert.equal(0, status)
    assert.same({}, marks())
    local queued = {}
    for _, body in ipairs(r:call("LRANGE", "queue:default", 0, -1)) do
      local jid = json.decode(body).jid
      assert.is_nil(queued[jid])
      queued[jid] = true
    end
    for _, jid in ipairs(jids) do assert.is_true(queued[jid], jid) end
    for _, key in ipairs(r:call("KEYS", "inflight:*")) do assert.equal(0, r:call("LLEN", key)) end
  end)

  it("finishes a job waiting across a reload on the code it started with", function()
    local w = worker()
    local old = enqueue(1, { 1500 })[1]
    proc.wait_for(function() return r:call("LLEN", "queue:default") == 0 end, 5, "the job fetched")
    w:write("scripts/jobs/spec/wait.lua", wait_job("new:"))
    assert.truthy(w:wait_log("msg=reloaded", 10))
    local new = enqueue(1, { 10 })[1]
    wait_marks(2)
    w:stop()
    local seen = {}
    for _, l in ipairs(marks()) do seen[l] = true end
    assert.is_true(seen[old .. " slept"], table.concat(marks(), "\n"))
    assert.is_true(seen[new .. " new:slept"], table.concat(marks(), "\n"))
  end)
end)
