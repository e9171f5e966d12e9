-- The real `multiconnect worker` against the real Redis: jobs run, fail, retry,
-- die, wait for their time, survive a kill -9 of their worker, and a SIGTERM.
local workers = require "support.worker"
local proc = require "support.process"
local json = require "mc.json"
local redis = require "mc.redis"
local socket = require "socket"

-- spec.mark: appends "<jid> <tag><arg>" to $MARKS, so that runs can be counted.
local function mark_job(tag)
  return string.format([[
    local _M = {}
    function _M.perform(args, ctx)
      local f = assert(io.open(os.getenv("MARKS"), "a"))
      f:write(ctx.jid, " %s", tostring(args[1]), "\n")
      f:close()
      return true
    end
    return _M
  ]], tag)
end

-- Jobs for the specs: each appends a line to $MARKS so that runs can be counted.
local JOBS = {
  ["scripts/jobs/spec/fail.lua"] = [[
    local _M = {}
    function _M.perform(args) return nil, "refused: " .. tostring(args[1]) end
    return _M
  ]],
  ["scripts/jobs/spec/raise.lua"] = [[
    local _M = {}
    function _M.perform(args) error("exploded") end
    return _M
  ]],
  ["scripts/jobs/spec/slow.lua"] = [[
    local _M = {}
    function _M.perform(args, ctx)
      local f = assert(io.open(os.getenv("MARKS"), "a"))
      f:write(ctx.jid, " start\n")
      f:close()
      os.execute("sleep " .. tonumber(args[1]))
      f = assert(io.open(os.getenv("MARKS"), "a"))
      f:write(ctx.jid, " end\n")
      f:close()
      return true
    end
    return _M
  ]],
  ["scripts/jobs/spec/spin.lua"] = [[
    local _M = {}
    function _M.perform(args) while true do end end
    return _M
  ]],
}
JOBS["scripts/jobs/spec/mark.lua"] = mark_job("")

local r, url, marks_path, marks_cleanup

local function marks()
  local f = io.open(marks_path)
  if not f then return {} end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  return lines
end

-- Waits (10 s at most) until n jobs have left their mark.
local function wait_marks(n)
  proc.wait_for(function() return #marks() == n end, 10, n .. " line(s) in $MARKS")
end

-- Waits (10 s at most) until the sorted set (retry, dead) holds n jobs.
local function wait_in(set, n)
  proc.wait_for(function() return r:call("ZCARD", set) == n end, 10, n .. " job(s) in " .. set)
end

local function worker(env)
  local e = { MARKS = marks_path, WORKER_POLL_INTERVAL = "0.2", WORKER_CONCURRENCY = "2",
              REDIS_URL = url }
  for k, v in pairs(env or {}) do e[k] = v end
  return workers.start({ files = JOBS, env = e })
end

-- enqueue through mc.jobs (this process shares REDIS_URL with the workers)
local jobs = require "mc.jobs"

describe("multiconnect worker", function()
  setup(function()
    -- a database of its own (9) on the test Redis: FLUSHDB between cases is safe
    url = assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/9"
    r = assert(redis.connect(url))
    jobs.use(r)
    local dir
    dir, marks_cleanup = proc.tmpdir()
    marks_path = dir .. "/marks"
  end)
  teardown(function() marks_cleanup() end)
  before_each(function()
    assert(r:call("FLUSHDB"))
    os.remove(marks_path)
  end)

  it("runs enqueued jobs and counts them", function()
    local w = worker()
    local jid = assert(jobs.enqueue("spec.mark", { "a" }))
    assert(jobs.enqueue("spec.mark", { "b" }))
    wait_marks(2)
    w:stop()
    local lines = marks()
    table.sort(lines)
    assert.truthy(lines[1] == jid .. " a" or lines[2] == jid .. " a")
    assert.equal("2", r:call("GET", "stat:processed"))
    assert.equal(0, r:call("LLEN", "queue:default"))
  end)

  it("puts a failed job in retry with Sidekiq's fields, then in dead after the last retry", function()
    local w = worker()
    local jid = assert(jobs.enqueue("spec.fail", { 7 }, { retry = 1 }))
    wait_in("retry", 1)
    local member = r:call("ZRANGE", "retry", 0, -1, "WITHSCORES")
    local job = json.decode(member[1])
    local score = tonumber(member[2])
    assert.equal(jid, job.jid)
    assert.equal("refused: 7", job.error_message)
    assert.equal("Lua::Error", job.error_class)
    assert.equal(0, job.retry_count)
    assert.is_number(job.failed_at)
    -- Sidekiq's backoff for the first retry: 0^4 + 15 + rand(10) * 1 seconds
    local delay = score - job.failed_at
    assert.truthy(delay >= 14.9 and delay <= 25.1, delay)
    -- make it due now: the poller moves it back, it fails again, and dies
    assert(r:call("ZADD", "retry", "XX", "0", member[1]))
    wait_in("dead", 1)
    w:stop()
    job = json.decode(r:call("ZRANGE", "dead", 0, -1)[1])
    assert.equal(1, job.retry_count)
    assert.is_number(job.retried_at)
    assert.equal(0, r:call("ZCARD", "retry"))
    assert.equal("2", r:call("GET", "stat:failed"))
  end)

  it("keeps only the message of a raised error in the job, the traceback in the log", function()
    local w = worker()
    assert(jobs.enqueue("spec.raise", {}, { retry = false }))
    wait_in("dead", 1)
    local job = json.decode(r:call("ZRANGE", "dead", 0, -1)[1])
    assert.matches("exploded$", job.error_message)
    assert.is_nil(job.error_message:find("stack traceback", 1, true))
    assert.truthy(w:wait_log("stack traceback", 5))
    w:stop()
  end)

  it("runs jobs whose payloads outgrow a job slot's kept buffer (20 KB), one after the other", function()
    local w = worker({ WORKER_CONCURRENCY = "1" })
    local big = string.rep("x", 20000)
    local jids = {}
    for i = 1, 3 do jids[i] = assert(jobs.enqueue("spec.mark", { big .. i })) end
    assert(jobs.enqueue("spec.mark", { "small" }))
    wait_marks(4)
    w:stop()
    local seen = {}
    for _, line in ipairs(marks()) do seen[line] = true end
    for i = 1, 3 do assert.truthy(seen[jids[i] .. " " .. big .. i], "job " .. i) end
    assert.equal("4", r:call("GET", "stat:processed"))
  end)

  it("logs each job done as one line, as mc.log would write it, plain values bare and others quoted", function()
    local w = worker()
    local plain = assert(jobs.enqueue("spec.mark", { "p" }))
    -- a jid that mc.log must quote and escape (pushed as Sidekiq's client could)
    local odd = jobs.payload("spec.mark", { "q" })
    odd.jid, odd.enqueued_at = 'odd jid "1"', jobs.now()
    assert(r:call("LPUSH", "queue:default", json.encode(odd)))
    wait_marks(2)
    assert.truthy(w:wait_log("odd jid", 5))
    local log = w:log()
    w:stop()
    local done = {}
    for line in log:gmatch("[^\n]+") do
      if line:find('msg="job done"', 1, true) then done[#done + 1] = line end
    end
    assert.equal(2, #done)
    local logger = require "mc.log"
    for _, jid in ipairs({ odd.jid, plain }) do
      local line = done[1]:find(jid == plain and jid or "odd jid", 1, true) and done[1] or done[2]
      local ms = line:match(" duration_ms=([%d.]+) ")
      local fields = { class = "spec.mark", jid = jid, queue = "default", duration_ms = ms }
      assert.equal(logger.format("info", "job done", fields), line)
    end
  end)

  it("logs a raised job as exactly one line, its traceback escaped onto it", function()
    local w = worker()
    local jid = assert(jobs.enqueue("spec.raise", {}, { retry = false }))
    assert.truthy(w:wait_log("job failed", 10))
    local log = w:log()
    w:stop()
    local lines, about = {}, {}
    for line in log:gmatch("[^\n]+") do
      lines[#lines + 1] = line
      if line:find(jid, 1, true) or line:find("exploded", 1, true) then about[#about + 1] = line end
    end
    assert.equal(1, #about)
    assert.matches("^at=warn msg=\"job failed\" ", about[1])
    assert.matches('error="[^"]*exploded\\nstack traceback:\\n\\t', about[1])
    for _, line in ipairs(lines) do -- no traceback line of its own anywhere
      assert.is_nil(line:find("^%s") or line:find("^stack traceback"), line)
    end
  end)

  it("logs worker code that fails to load as one line too, and exits 1", function()
    -- JOB_TIMEOUT is read as each thread's state loads
    local w = require("support.daemon").start({ command = "worker", files = JOBS,
      env = { REDIS_URL = url, JOB_TIMEOUT = "soon" }, may_end = true })
    assert.is_true(w:wait(10))
    local log = w:log()
    assert.equal(1, w:stop())
    local failed = 0
    for line in log:gmatch("[^\n]+") do
      if line:find('msg="worker code failed to load"', 1, true) then
        failed = failed + 1
        -- the error readable first, its frames on the same line after it
        assert.matches('error=".*JOB_TIMEOUT.*" trace=".* <%- .*"$', line)
        assert.is_nil(line:find("\\n", 1, true) or line:find("\\t", 1, true), line)
      end
      assert.is_nil(line:find("^%s") or line:find("^stack traceback"), line)
    end
    assert.equal(1, failed)
  end)

  it("fails a job that runs past JOB_TIMEOUT", function()
    local w = worker({ JOB_TIMEOUT = "0.3" })
    assert(jobs.enqueue("spec.spin", {}, { retry = false }))
    wait_in("dead", 1)
    w:stop()
    assert.matches("time limit", json.decode(r:call("ZRANGE", "dead", 0, -1)[1]).error_message)
  end)

  it("runs a scheduled job at its time, not before", function()
    local w = worker()
    local enqueued = socket.gettime()
    assert(jobs.enqueue("spec.mark", { "later" }, { ["in"] = 1.5 }))
    assert.equal(1, r:call("ZCARD", "schedule"))
    wait_marks(1) -- seen within one 50 ms poll of the run
    local ran_after = socket.gettime() - enqueued
    w:stop()
    assert.truthy(ran_after >= 1.499, "ran " .. ran_after .. " s after it was enqueued for 1.5 s later")
    assert.equal(0, r:call("ZCARD", "schedule"))
  end)

  it("runs again, elsewhere, the job in flight when its worker is killed -9, and only that one", function()
    local a = worker({ WORKER_CONCURRENCY = "1", WORKER_HEARTBEAT_TTL = "2" })
    local slow = assert(jobs.enqueue("spec.slow", { 30 }))
    wait_marks(1)
    local done = assert(jobs.enqueue("spec.mark", { "queued" }))
    a:signal("KILL")
    assert.is_true(a:wait(5))
    a:stop()
    -- the killed job sits in the dead process's in-flight list; a new worker
    -- finds it once that process's heartbeat has expired
    local b = worker({ WORKER_CONCURRENCY = "2", WORKER_HEARTBEAT_TTL = "2" })
    proc.wait_for(function()
      local n = 0
      for _, l in ipairs(marks()) do if l == slow .. " start" then n = n + 1 end end
      return n == 2
    end, 20, "the killed job to start again")
    assert.truthy(b:wait_log("recovered jobs of a dead process", 5))
    b:stop()
    local counts = {}
    for _, l in ipairs(marks()) do counts[l] = (counts[l] or 0) + 1 end
    assert.equal(1, counts[done .. " queued"]) -- it was queued, not in flight: ran once
  end)

  it("on SIGTERM finishes the running job and exits 0", function()
    local w = worker({ WORKER_CONCURRENCY = "1" })
    local jid = assert(jobs.enqueue("spec.slow", { 1 }))
    wait_marks(1)
    w:signal("TERM")
    assert.is_true(w:wait(15))
    local status = w:exit_status()
    w:stop()
    assert.equal(0, status)
    assert.same({ jid .. " start", jid .. " end" }, marks())
    assert.equal(0, r:call("LLEN", "queue:default"))
    assert.equal(0, r:call("SCARD", "processes"))
  end)

  it("pushes back a job that outlives SHUTDOWN_TIMEOUT", function()
    local w = worker({ WORKER_CONCURRENCY = "1", SHUTDOWN_TIMEOUT = "0.5" })
    local jid = assert(jobs.enqueue("spec.slow", { 5 }))
    wait_marks(1)
    w:signal("TERM")
    assert.is_true(w:wait(15))
    local status = w:exit_status()
    w:stop()
    assert.equal(0, status)
    local queued = r:call("LRANGE", "queue:default", 0, -1)
    assert.equal(1, #queued)
    assert.equal(jid, json.decode(queued[1]).jid)
  end)

  it("stops taking jobs when quiet (SIGTSTP) and shows it in its heartbeat", function()
    local w = worker()
    w:signal("TSTP")
    assert.truthy(w:wait_log("quiet", 5))
    assert(jobs.enqueue("spec.mark", { "q" }))
    local processes = proc.wait_for(function()
      local ids = r:call("SMEMBERS", "processes")
      return ids[1] and r:call("HGET", ids[1], "quiet") == "true" and ids
    end, 10, "a heartbeat with quiet=true")
    -- a pause on purpose: the job must NOT run, and five polls (0.2 s each) are
    -- time enough for a worker that still fetched to take it
    socket.sleep(1)
    w:stop()
    assert.same({}, marks())
    assert.equal(1, #processes)
  end)

  it("writes the heartbeat Sidekiq's API reads", function()
    local w = worker({ WORKER_CONCURRENCY = "3", WORKER_HEARTBEAT_TTL = "3" }) -- a beat a second
    assert(jobs.enqueue("spec.slow", { 4 }))
    wait_marks(1)
    local id
    proc.wait_for(function()
      id = r:call("SMEMBERS", "processes")[1]
      return id and r:call("HGET", id, "busy") == "1"
    end, 10, "a heartbeat with busy=1")
    local info = json.decode(r:call("HGET", id, "info"))
    local work = r:call("HGETALL", id .. ":workers")
    local ttl = r:call("TTL", id)
    w:stop()
    assert.equal(3, info.concurrency)
    assert.same({ "default" }, info.queues)
    assert.equal(id, info.identity)
    assert.truthy(ttl > 0 and ttl <= 60)
    local entry = json.decode(work[2])
    assert.equal("default", entry.queue)
    assert.equal("spec.slow", json.decode(entry.payload).class)
  end)

  it("picks up edited job code between jobs", function()
    local w = worker({ WORKER_CONCURRENCY = "1" })
    assert(jobs.enqueue("spec.mark", { "old" }))
    wait_marks(1)
    w:write("scripts/jobs/spec/mark.lua", mark_job("new:"))
    assert.truthy(w:wait_log("msg=reloaded", 10))
    local jid = assert(jobs.enqueue("spec.mark", { "x" }))
    wait_marks(2)
    w:stop()
    assert.equal(jid .. " new:x", marks()[2])
  end)

  it("pushes back a job left in its own in-flight list that no thread runs", function()
    local w = worker({ WORKER_STRAY_GRACE = "0.5" })
    local id
    proc.wait_for(function()
      id = r:call("SMEMBERS", "processes")[1]
      return id ~= nil
    end, 10, "the worker's heartbeat")
    -- as if a thread's LMOVE happened but its reply was lost
    local job = jobs.payload("spec.mark", { "stray" })
    job.enqueued_at = jobs.now()
    assert(r:call("LPUSH", "inflight:" .. id, json.encode(job)))
    wait_marks(1)
    assert.truthy(w:wait_log("pushed back a job no thread was running", 5))
    w:stop()
    assert.equal(job.jid .. " stray", marks()[1])
    assert.equal(0, r:call("LLEN", "inflight:" .. id))
  end)
end)
