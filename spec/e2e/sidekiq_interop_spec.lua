-- Interop with Sidekiq 6.4.1 (Debian 12's ruby-sidekiq), both ways, on a private
-- redis-server: Sidekiq's own client pushes jobs that `multiconnect worker` runs,
-- and Sidekiq's API reads and acts on what mc.jobs and the worker write.
local proc = require "support.process"
local server = require "support.server"
local workers = require "support.worker"
local json = require "mc.json"
local redis = require "mc.redis"

local RUBY_PRELUDE = [[
require "sidekiq"
require "sidekiq/api"
require "json"
$VERBOSE = nil
Sidekiq.configure_client { |c| c.redis = { url: ENV["REDIS_URL"] } }
Sidekiq.logger.level = Logger::WARN
def wait_until(seconds = 30)
  deadline = Time.now + seconds
  until (v = yield)
    return nil if Time.now > deadline
    sleep 0.05
  end
  v
end
]]

-- The job modules the worker runs. MARK_DIR is where they leave their traces.
local JOBS = {
  -- writes what it got
  ["scripts/jobs/interop/mark.lua"] = [[
local json = require "mc.json"
return { perform = function(args, ctx)
  local f = assert(io.open(os.getenv("MARK_DIR") .. "/" .. ctx.jid, "w"))
  f:write(json.encode({ args = args, queue = ctx.queue }))
  f:close()
end }
]],
  -- fails the first time it sees a jid, succeeds after
  ["scripts/jobs/interop/flaky.lua"] = [[
return { perform = function(args, ctx)
  local dir = os.getenv("MARK_DIR")
  local tried = io.open(dir .. "/" .. ctx.jid .. ".tried")
  if not tried then
    assert(io.open(dir .. "/" .. ctx.jid .. ".tried", "w")):close()
    error("boom " .. tostring(args[1]), 0)
  end
  tried:close()
  assert(io.open(dir .. "/" .. ctx.jid, "w")):close()
end }
]],
  -- always fails
  ["scripts/jobs/interop/broken.lua"] = [[
return { perform = function(args) return nil, "broken for good: " .. tostring(args[1]) end }
]],
  -- says it started, then runs until MARK_DIR/release exists (30 s at most)
  ["scripts/jobs/interop/hold.lua"] = [[
local host = require "mc.host"
return { perform = function(args, ctx)
  local dir = os.getenv("MARK_DIR")
  assert(io.open(dir .. "/" .. ctx.jid .. ".started", "w")):close()
  local deadline = host.now() + 30
  while host.now() < deadline do
    local f = io.open(dir .. "/release")
    if f then f:close() break end
    host.sleep(0.02)
  end
  assert(io.open(dir .. "/" .. ctx.jid, "w")):close()
end }
]],
  -- `multiconnect run tools.enqueue '{"name":..,"args":..,"opts":..}'` prints the jid
  ["scripts/tools/enqueue.lua"] = [[
local jobs = require "mc.jobs"
local req = assert(mc.json.decode(arg[1]))
local jid, err = jobs.enqueue(req.name, req.args, req.opts)
if not jid then return nil, err end
print(jid)
]],
}

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

describe("Sidekiq 6 interop", function()
  local root, cleanup_root, redis_dir, cleanup_redis_dir, url, r, worker
  local marks

  local function ruby(code)
    local res = proc.run({ "ruby", "-e", RUBY_PRELUDE .. code }, { env = { REDIS_URL = url } })
    assert.equal(0, res.code, res.stderr)
    local out = res.stdout:match("([^\n]*)\n?$")
    local doc, err = json.decode(out)
    assert(doc ~= nil, "ruby printed no JSON (" .. tostring(err) .. "): " .. res.stdout .. res.stderr)
    return doc
  end

  local function enqueue(name, args, opts)
    local res = proc.mc({ "run", "tools.enqueue",
      assert(json.encode({ name = name, args = args or json.empty_array, opts = opts or {} })) },
      { env = { MC_ROOT = root, REDIS_URL = url } })
    assert.equal(0, res.code, res.stderr .. res.stdout)
    return (res.stdout:match("^(%x+)"))
  end

  local wait_for = proc.wait_for

  setup(function()
    -- a private redis-server: Sidekiq's keys (retry, dead, stat:*, processes) are global
    redis_dir, cleanup_redis_dir = proc.tmpdir()
    local port = server.free_port()
    local res = proc.run({ "redis-server", "--port", tostring(port), "--bind", "127.0.0.1",
      "--save", "", "--appendonly", "no", "--daemonize", "yes", "--dir", redis_dir,
      "--pidfile", redis_dir .. "/redis.pid", "--logfile", redis_dir .. "/redis.log" })
    assert.equal(0, res.code, res.stderr)
    url = "redis://127.0.0.1:" .. port .. "/0"
    r = assert(wait_for(function() return redis.connect(url) end, 10), "private redis did not start")
    root, cleanup_root = proc.tmpdir()
    marks = root .. "/marks"
    os.execute("mkdir -p " .. proc.quote(marks))
    for path, content in pairs(JOBS) do
      os.execute("mkdir -p " .. proc.quote(root .. "/" .. path:match("^(.*)/")))
      proc.write(root .. "/" .. path, content)
    end
    worker = workers.start({ root = root, env = {
      REDIS_URL = url, MARK_DIR = marks, WORKER_QUEUES = "interop", WORKER_CONCURRENCY = "3",
      WORKER_POLL_INTERVAL = "0.2", WORKER_HEARTBEAT_TTL = "3", MC_RELOAD = "0",
    } })
  end)

  teardown(function()
    if worker then worker:stop() end
    if r then r:close() end
    local f = redis_dir and io.open(redis_dir .. "/redis.pid")
    if f then
      local pid = f:read("n")
      f:close()
      if pid then os.execute("kill " .. pid) end
      wait_for(function() return not exists(redis_dir .. "/redis.pid") end, 10)
    end
    if cleanup_redis_dir then cleanup_redis_dir() end
    if cleanup_root then cleanup_root() end
  end)

  describe("a job pushed by Sidekiq::Client", function()
    it("runs in multiconnect worker with its args", function()
      local jid = ruby([=[
        jid = Sidekiq::Client.push("class" => "interop.mark", "queue" => "interop",
          "args" => [1, "two", {"three" => [3.5, nil, true]}])
        puts JSON.generate(jid)
      ]=])
      assert.is_string(jid)
      assert.truthy(wait_for(function() return exists(marks .. "/" .. jid) end), worker:log())
      local f = assert(io.open(marks .. "/" .. jid))
      local got = json.decode(f:read("a"))
      f:close()
      assert.same({ args = { 1, "two", { three = { 3.5, json.null, true } } }, queue = "interop" }, got)
      -- done: out of the queue and of the worker's in-flight list
      assert(wait_for(function() return r:call("LLEN", "queue:interop") == 0 end))
      local processed = ruby([=[puts JSON.generate(Sidekiq::Stats.new.processed)]=])
      assert.is_true(processed >= 1)
    end)

    it("scheduled by Sidekiq (perform_in) runs once due", function()
      local jid = ruby([=[
        puts JSON.generate(Sidekiq::Client.push("class" => "interop.mark", "queue" => "interop",
          "args" => ["later"], "at" => Time.now.to_f + 0.5))
      ]=])
      assert.equal(1, r:call("ZCARD", "schedule"))
      assert.truthy(wait_for(function() return exists(marks .. "/" .. jid) end), worker:log())
      assert.equal(0, r:call("ZCARD", "schedule"))
    end)
  end)

  describe("Sidekiq's API reads", function()
    it("mc.jobs.enqueue's jobs in Sidekiq::Queue", function()
      local a = enqueue("interop.mark", { 1, "x" }, { queue = "interop_idle" })
      local b = enqueue("interop.mark", nil, { queue = "interop_idle", retry = 3 })
      local got = ruby([=[
        q = Sidekiq::Queue.new("interop_idle")
        puts JSON.generate({
          "names" => Sidekiq::Queue.all.map(&:name),
          "size" => q.size,
          "latency_ok" => q.latency >= 0,
          "jobs" => q.map { |j| [j.klass, j.args, j.jid, j.queue, j["retry"],
                                 j.enqueued_at.is_a?(Time), j.created_at.is_a?(Time)] },
          "enqueued" => Sidekiq::Stats.new.enqueued,
        })
      ]=])
      assert.truthy(got.names[1] == "interop_idle" or got.names[2] == "interop_idle")
      assert.equal(2, got.size)
      assert.is_true(got.latency_ok)
      -- LPUSH: the newest first in Sidekiq's listing
      assert.same({
        { "interop.mark", {}, b, "interop_idle", 3, true, true },
        { "interop.mark", { 1, "x" }, a, "interop_idle", true, true, true },
      }, got.jobs)
      assert.equal(2, got.enqueued)
    end)

    it("and Sidekiq::Queue#clear empties what mc.jobs pushed", function()
      local got = ruby([=[
        Sidekiq::Queue.new("interop_idle").clear
        puts JSON.generate([Sidekiq::Queue.new("interop_idle").size, Sidekiq::Queue.all.map(&:name)])
      ]=])
      assert.equal(0, got[1])
      for _, name in ipairs(got[2]) do assert.not_equal("interop_idle", name) end
      assert.equal(0, r:call("EXISTS", "queue:interop_idle"))
    end)

    it("scheduled jobs in Sidekiq::ScheduledSet, and add_to_queue hands them to our worker", function()
      local jid = enqueue("interop.mark", { "sched" }, { queue = "interop", ["in"] = 3600 })
      local got = ruby([=[
        s = Sidekiq::ScheduledSet.new
        puts JSON.generate({ "size" => s.size,
          "jobs" => s.map { |j| [j.klass, j.args, j.jid, j.queue, (j.at.to_f - Time.now.to_f).round] } })
      ]=])
      assert.equal(1, got.size)
      local job = got.jobs[1]
      assert.same({ "interop.mark", { "sched" }, jid, "interop" }, { job[1], job[2], job[3], job[4] })
      assert.is_true(job[5] > 3500 and job[5] <= 3600)
      ruby([=[Sidekiq::ScheduledSet.new.each(&:add_to_queue); puts "0"]=])
      assert.truthy(wait_for(function() return exists(marks .. "/" .. jid) end), worker:log())
    end)

    it("a failed job in Sidekiq::RetrySet, and retry hands it back to our worker", function()
      local before = ruby([=[puts JSON.generate(Sidekiq::Stats.new.failed)]=])
      local jid = enqueue("interop.flaky", { 42 }, { queue = "interop" })
      local got = ruby([=[
        rs = Sidekiq::RetrySet.new
        wait_until { rs.size == 1 }
        puts JSON.generate(rs.map { |j| {
          "class" => j.klass, "args" => j.args, "jid" => j.jid, "queue" => j.queue,
          "error_class" => j["error_class"], "error_message" => j["error_message"],
          "retry_count" => j["retry_count"], "failed_at" => j["failed_at"].is_a?(Numeric),
          "error" => j.error?, "in" => j.at.to_f - Time.now.to_f,
          "failed" => Sidekiq::Stats.new.failed } })
      ]=])
      assert.equal(1, #got, worker:log())
      local job = got[1]
      assert.same({ "interop.flaky", { 42 }, jid, "interop", "boom 42", 0, true, true },
        { job.class, job.args, job.jid, job.queue, job.error_message, job.retry_count,
          job.failed_at, job.error })
      assert.is_string(job.error_class)
      assert.is_true(job["in"] > 0) -- Sidekiq's backoff: at least 15 s away
      assert.equal(before + 1, job.failed)
      assert.is_false(exists(marks .. "/" .. jid))

      ruby([=[Sidekiq::RetrySet.new.each(&:retry); puts JSON.generate(Sidekiq::RetrySet.new.size)]=])
      assert.truthy(wait_for(function() return exists(marks .. "/" .. jid) end), worker:log())
      assert.equal(0, r:call("ZCARD", "retry"))
      -- the mark is written inside perform: the job is done (off Sidekiq::Workers,
      -- counted) only a moment later; the next test must not see it running
      local idle = ruby([=[puts JSON.generate(wait_until { Sidekiq::Workers.new.size == 0 } || false)]=])
      assert.is_true(idle)
    end)

    it("a job out of retries in Sidekiq::DeadSet, and retry from there runs it again", function()
      local jid = enqueue("interop.broken", { "x" }, { queue = "interop", retry = false })
      local got = ruby([=[
        ds = Sidekiq::DeadSet.new
        wait_until { ds.size == 1 }
        puts JSON.generate(ds.map { |j| [j.klass, j.jid, j["error_message"], j["retry_count"]] })
      ]=])
      assert.same({ { "interop.broken", jid, "broken for good: x", 0 } }, got, worker:log())
      -- DeadSet#retry pushes it back; it fails again and, retry = false, dies again
      local dead = ruby([=[
        Sidekiq::DeadSet.new.each(&:retry)
        ds = Sidekiq::DeadSet.new
        wait_until { ds.size == 1 && ds.first["retried_at"] }
        puts JSON.generate(ds.map { |j| [j.jid, j["retry_count"], !!j["retried_at"]] })
      ]=])
      assert.same({ { jid, 0, true } }, dead, worker:log())
    end)

    it("our running worker in Sidekiq::ProcessSet and its job in Sidekiq::Workers", function()
      local jid = enqueue("interop.hold", { "held" }, { queue = "interop" })
      assert.truthy(wait_for(function() return exists(marks .. "/" .. jid .. ".started") end), worker:log())
      local got = ruby([=[
        found = wait_until { Sidekiq::ProcessSet.new.find { |p| p["busy"] == 1 } }
        work = wait_until { Sidekiq::Workers.new.to_a.first }
        puts JSON.generate({
          "processes" => Sidekiq::ProcessSet.new.size,
          "identity" => found && found.identity, "pid" => found && found["pid"],
          "concurrency" => found && found["concurrency"], "queues" => found && found.queues,
          "stopping" => found && found.stopping?, "beat" => found && found["beat"] > 0,
          "total_concurrency" => Sidekiq::ProcessSet.new.total_concurrency,
          "workers_size" => Sidekiq::Workers.new.size,
          "work" => work && [work[0], work[2]["queue"], work[2]["payload"]["jid"],
                             work[2]["payload"]["class"], work[2]["run_at"].is_a?(Integer)],
        })
      ]=])
      assert.equal(1, got.processes)
      assert.equal(worker.pid, tostring(got.pid))
      assert.same({ 3, { "interop" }, false, true, 3, 1 },
        { got.concurrency, got.queues, got.stopping, got.beat, got.total_concurrency, got.workers_size })
      assert.same({ got.identity, "interop", jid, "interop.hold", true }, got.work)
      proc.write(marks .. "/release", "")
      assert.truthy(wait_for(function() return exists(marks .. "/" .. jid) end), worker:log())
      local idle = ruby([=[puts JSON.generate(wait_until { Sidekiq::Workers.new.size == 0 } || false)]=])
      assert.is_true(idle)
    end)

    it("the processed and failed counters Sidekiq::Stats shows, with the dated history", function()
      local got = ruby([=[
        s = Sidekiq::Stats.new
        h = Sidekiq::Stats::History.new(1)
        puts JSON.generate([s.processed, s.failed, h.processed.values.first, h.failed.values.first])
      ]=])
      -- as Sidekiq counts, processed includes the failures: so far mark x3,
      -- flaky x2 (one failed), broken x2 (both failed), hold x1
      assert.same({ 8, 3, 8, 3 }, got)
    end)

    it("Process#quiet! and #stop! from Sidekiq's API reach our worker", function()
      local quiet = ruby([=[
        Sidekiq::ProcessSet.new.each(&:quiet!)
        puts JSON.generate(wait_until { Sidekiq::ProcessSet.new.all?(&:stopping?) } || false)
      ]=])
      assert.is_true(quiet, worker:log())
      assert.truthy(worker:log():find("msg=\"quiet: no new jobs\"", 1, true))
      ruby([=[Sidekiq::ProcessSet.new.each(&:stop!); puts "0"]=])
      assert.truthy(worker:wait_for(function() return not worker:alive() end, 30), worker:log())
      assert.equal(0, worker:stop())
      worker = nil
      -- gone from Sidekiq's view at once, not when its heartbeat expires
      assert.same({ 0, 0 },
        ruby([=[puts JSON.generate([Sidekiq::ProcessSet.new.to_a.size, Sidekiq::Workers.new.size])]=]))
    end)
  end)
end)
