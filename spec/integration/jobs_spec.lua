-- mc.jobs against the real Redis (database 10 of the test server).
local jobs = require "mc.jobs"
local redis = require "mc.redis"
local json = require "mc.json"

describe("mc.jobs", function()
  local r
  setup(function()
    r = assert(redis.connect(assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/10"))
    jobs.use(r)
  end)
  before_each(function() assert(r:call("FLUSHDB")) end)

  it("pushes a Sidekiq-shaped job onto its queue", function()
    local before = jobs.now()
    local jid = assert(jobs.enqueue("onboarding.advance", { "00D000000000001AAA", 2 }, { queue = "critical" }))
    assert.matches("^%x+$", jid)
    assert.equal(24, #jid)
    assert.same({ "critical" }, r:call("SMEMBERS", "queues"))
    local raw = r:call("LRANGE", "queue:critical", 0, -1)
    assert.equal(1, #raw)
    local job = json.decode(raw[1])
    assert.equal("onboarding.advance", job.class)
    assert.same({ "00D000000000001AAA", 2 }, job.args)
    assert.equal(jid, job.jid)
    assert.equal("critical", job.queue)
    assert.is_true(job.retry)
    assert.truthy(job.created_at >= before - 1 and job.enqueued_at >= job.created_at)
    assert.equal("float", math.type(job.created_at))
  end)

  it("writes empty args as [] and keeps retry options", function()
    assert(jobs.enqueue("x.y", {}, { retry = false }))
    assert(jobs.enqueue("x.y", nil, { retry = 3 }))
    local raw = r:call("LRANGE", "queue:default", 0, -1)
    assert.matches('"args":%[%]', raw[1])
    local retries = {}
    for _, b in ipairs(raw) do retries[#retries + 1] = json.decode(b).retry end
    table.sort(retries, function(a, b) return tostring(a) < tostring(b) end)
    assert.same({ 3, false }, retries)
  end)

  it("schedules a job for later in the schedule set, scored by its time", function()
    local at = jobs.now() + 3600
    local jid = assert(jobs.enqueue("x.y", { 1 }, { at = at }))
    assert.equal(0, r:call("LLEN", "queue:default"))
    local member = r:call("ZRANGE", "schedule", 0, -1, "WITHSCORES")
    local job = json.decode(member[1])
    assert.equal(jid, job.jid)
    assert.is_nil(job.enqueued_at)
    assert.truthy(math.abs(tonumber(member[2]) - at) < 0.001)
    assert(jobs.enqueue("x.y", { 2 }, { ["in"] = 60 }))
    assert.equal(2, r:call("ZCARD", "schedule"))
  end)

  it("stamps enqueued_at once when a due job moves to its queue, a retry's old value replaced", function()
    local worker = require "mc.worker"
    local bodies = {
      '{"class":"x.y","args":[],"jid":"a1","queue":"default"}',
      '{"class":"x.y","args":[{"enqueued_at":1},"enqueued_at"],"jid":"a2","queue":"default",'
        .. '"note":"\\"enqueued_at\\":","enqueued_at" : 1.5e9,"retry_count":0}',
    }
    for _, b in ipairs(bodies) do assert(r:call("ZADD", "retry", "0", b)) end
    assert.equal(2, worker.enqueue_due(r))
    local queued = r:call("LRANGE", "queue:default", 0, -1)
    local now = jobs.now()
    for _, body in ipairs(queued) do
      local job = assert(json.decode(body)) -- a second enqueued_at would be refused here
      assert.truthy(math.abs(job.enqueued_at - now) < 5, body)
      if job.jid == "a2" then
        assert.same({ { enqueued_at = 1 }, "enqueued_at" }, job.args)
        assert.equal('"enqueued_at":', job.note)
      else
        assert.equal("[]", body:match('"args":(%[%])'))
      end
    end
  end)

  it("raises on misuse", function()
    assert.has_error(function() jobs.enqueue("bad name!", {}) end)
    assert.has_error(function() jobs.enqueue("x.y", { a = 1 }) end)
    assert.has_error(function() jobs.enqueue("x.y", { 1, nil, 3 }) end)
    assert.has_error(function() jobs.enqueue("x.y", {}, { retry = "often" }) end)
    assert.has_error(function() jobs.enqueue("x.y", {}, { at = 1, ["in"] = 1 }) end)
    assert.has_error(function() jobs.enqueue("x.y", { function() end }) end)
  end)

  it("computes Sidekiq's backoff and marks failures", function()
    for count = 0, 5 do
      local d = jobs.backoff(count)
      assert.truthy(d >= count ^ 4 + 15 and d <= count ^ 4 + 15 + 9 * (count + 1), d)
    end
    local job = jobs.payload("x.y", {}, { retry = 2 })
    assert.equal("retry", (jobs.fail(job, "first")))
    assert.equal(0, job.retry_count)
    assert.equal("retry", (jobs.fail(job, "second")))
    assert.equal(1, job.retry_count)
    assert.is_number(job.retried_at)
    assert.equal("dead", (jobs.fail(job, "third")))
    assert.equal(2, job.retry_count)
    local never = jobs.payload("x.y", {}, { retry = false })
    assert.equal("dead", (jobs.fail(never, string.rep("e", 20000))))
    assert.equal(jobs.ERROR_MAX, #never.error_message)
  end)

  it("caps the dead set by size", function()
    local saved = jobs.DEAD_MAX_JOBS
    jobs.DEAD_MAX_JOBS = 3
    for i = 1, 5 do
      local job = jobs.payload("x.y", { i })
      assert(r:pipeline(function(p) jobs.bury(p, job, jobs.now() + i) end))
    end
    jobs.DEAD_MAX_JOBS = saved
    local left = r:call("ZRANGE", "dead", 0, -1)
    assert.equal(3, #left)
    assert.same({ 5 }, json.decode(left[3]).args) -- the newest survive
  end)

  it("reports stats", function()
    assert(jobs.enqueue("x.y", {}, { queue = "a" }))
    assert(jobs.enqueue("x.y", {}, { queue = "a" }))
    assert(r:call("INCRBY", "stat:processed", 7))
    local s = assert(jobs.stats())
    assert.equal(7, s.processed)
    assert.equal(0, s.failed)
    assert.equal(2, s.queues.a)
  end)
  describe("the sets, queues and processes an operator looks after", function()
    local function bury(set, jid, at, queue)
      local job = jobs.payload("onboarding.advance", { jid }, { queue = queue or "default" })
      job.jid, job.error_message = jid, "failed " .. jid
      assert(r:call("ZADD", set, at, json.encode(job)))
    end

    it("lists a set (dead newest first, retry soonest first) and keeps a member that is not JSON", function()
      bury("dead", "d1", 100); bury("dead", "d2", 200)
      assert(r:call("ZADD", "dead", 150, "not json"))
      local dead = jobs.entries("dead")
      assert.same({ "d2", nil, "d1" }, { dead[1].jid, dead[2].jid, dead[3].jid })
      assert.same({ "not json", 150.0 }, { dead[2].raw, dead[2].at })
      bury("retry", "r1", 300); bury("retry", "r2", 250)
      local retry = jobs.entries("retry", 1)
      assert.same({ "r2", "failed r2", 250.0 }, { retry[1].jid, retry[1].error_message, retry[1].at })
    end)

    it("retries one job by jid onto its queue, payload unchanged; a second time finds nothing", function()
      bury("retry", "r1", 300, "critical"); bury("retry", "r2", 301)
      local before = r:call("ZRANGEBYSCORE", "retry", 300, 300)[1]
      assert.is_true(jobs.retry_job("retry", "r1"))
      assert.is_false(jobs.retry_job("retry", "r1"))
      assert.same({ before }, r:call("LRANGE", "queue:critical", 0, -1))
      assert.equal(1, r:call("SISMEMBER", "queues", "critical"))
      assert.equal(1, r:call("ZCARD", "retry"))
    end)

    it("retries all, deletes one, clears a set", function()
      bury("dead", "d1", 1); bury("dead", "d2", 2); bury("dead", "d3", 3)
      assert(r:call("ZADD", "dead", 4, "junk"))
      assert.is_true(jobs.delete_job("dead", "d2"))
      assert.is_false(jobs.delete_job("dead", "d2"))
      assert.same({ 2, 1 }, { jobs.retry_all("dead") })
      assert.equal(2, r:call("LLEN", "queue:default"))
      assert.equal(1, jobs.clear("dead"))
      assert.equal(0, r:call("EXISTS", "dead"))
      assert.has_error(function() jobs.clear("queue:default") end, "jobs.clear: set must be schedule, retry or dead")
    end)

    it("gives each queue's size and latency, each process's busy threads, and the daily counters", function()
      local old = jobs.payload("x.y", {}, { queue = "low" })
      jobs.push(r, old)
      local oldest = r:call("LINDEX", "queue:low", -1)
      local doc = json.decode(oldest)
      doc.enqueued_at = jobs.now() - 30
      assert(r:call("LSET", "queue:low", -1, json.encode(doc)))
      assert(jobs.enqueue("x.y", {}, { queue = "low" }))
      assert(r:call("SADD", "queues", "empty"))
      local q = jobs.queues()
      assert.same({ "empty", 0, 0 }, { q[1].name, q[1].size, q[1].latency })
      assert.same({ "low", 2 }, { q[2].name, q[2].size })
      assert.is_true(q[2].latency >= 29 and q[2].latency < 60, tostring(q[2].latency))
      assert(r:call("SADD", "processes", "host:1:abc"))
      assert(r:call("HSET", "host:1:abc", "busy", "3", "beat", "1700000000.5", "quiet", "true"))
      assert.same({ { identity = "host:1:abc", busy = 3, beat = 1700000000.5, quiet = true } }, jobs.processes())
      local today = os.date("!%Y-%m-%d", math.floor(jobs.now()))
      assert(r:call("SET", "stat:processed:" .. today, "12"))
      assert(r:call("SET", "stat:failed:" .. today, "2"))
      local h = jobs.history(3)
      assert.same({ 3, today, 12, 2, 0 }, { #h, h[3].date, h[3].processed, h[3].failed, h[1].processed })
    end)
  end)
  it("brings a dead process's 100 jobs in flight back in 17 waves: one now, ten alone, then doubling", function()
    local worker = require "mc.worker"
    local dead = "deadhost:1:abc"
    r:call("SADD", "mc:inflight", dead)
    for i = 1, 100 do
      r:call("LPUSH", "inflight:" .. dead, json.encode({ class = "x.y", jid = "j" .. i, queue = "default", args = {} }))
    end
    local now = jobs.now()
    local moved, buried = assert(worker.recover_orphans(r, "me:1:xyz", 1))
    assert.equal(100, moved)
    assert.equal(0, buried)
    assert.equal(1, r:call("LLEN", "queue:default"))
    local waves = {}
    local scores = r:call("ZRANGE", "schedule", 0, -1, "WITHSCORES")
    for i = 2, #scores, 2 do
      local wave = math.floor(tonumber(scores[i]) - now + 0.5)
      waves[wave] = (waves[wave] or 0) + 1
    end
    for w = 1, 10 do assert.equal(1, waves[w], "wave " .. w) end
    assert.same({ 1, 2, 4, 8, 16, 32, 26 },
      { waves[11], waves[12], waves[13], waves[14], waves[15], waves[16], waves[17] })
    assert.equal(0, r:call("EXISTS", "inflight:" .. dead))
  end)
  it("brings back the jobs of every thread's in-flight list of a dead process, and forgets it", function()
    local worker = require "mc.worker"
    local dead = "deadhost:2:def"
    r:call("SADD", "mc:inflight", dead)
    r:call("HSET", "mc:inflight:threads", dead, 3)
    for t, key in ipairs({ "inflight:" .. dead .. ":1", "inflight:" .. dead .. ":3", "inflight:" .. dead }) do
      r:call("LPUSH", key, json.encode({ class = "x.y", jid = "t" .. t, queue = "default", args = {} }))
    end
    assert.same({ "inflight:" .. dead, "inflight:" .. dead .. ":1", "inflight:" .. dead .. ":2",
      "inflight:" .. dead .. ":3" }, worker.inflight_keys(dead, 3))
    local moved, buried = assert(worker.recover_orphans(r, "me:1:xyz", 1))
    assert.same({ 3, 0 }, { moved, buried })
    assert.equal(1, r:call("LLEN", "queue:default"))
    assert.equal(2, r:call("ZCARD", "schedule"))
    assert.same({}, r:call("KEYS", "inflight:" .. dead .. "*"))
    assert.equal(0, r:call("SISMEMBER", "mc:inflight", dead))
    assert.equal(0, r:call("HEXISTS", "mc:inflight:threads", dead))
  end)
  it("finds a dead process's thread lists by their count alone (an earlier version left mc:inflight)", function()
    local worker = require "mc.worker"
    local dead = "deadhost:3:fed"
    r:call("HSET", "mc:inflight:threads", dead, 2)
    local job = json.encode({ class = "x.y", jid = "a", queue = "default", args = {} })
    r:call("LPUSH", "inflight:" .. dead .. ":2", job)
    assert.same({ 1, 0 }, { assert(worker.recover_orphans(r, "me:1:xyz", 1)) })
    assert.equal(1, r:call("LLEN", "queue:default"))
    assert.equal(0, r:call("EXISTS", "inflight:" .. dead .. ":2"))
  end)
end)
