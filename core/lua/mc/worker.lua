-- mc.worker: `multiconnect worker`. Threads (core/worker.c) each call the entry
-- point from thread_entry() in a loop: fetch one job reliably, run it, settle it.
-- The main thread's tick keeps the heartbeat Sidekiq's API reads, moves due jobs
-- from `schedule` and `retry` to their queues, and pushes back the in-flight jobs
-- of processes that died.
local native = require "mc.worker_native"
local jobs = require "mc.jobs"
local json = require "mc.json"
local log = require "mc.log"
local host = require "mc.host"
local env = require "mc.env"
local crypto = require "mc.crypto"
local sched = require "mc.sched"
local conns = require "mc.conns"

local type, pcall, setmetatable, tostring = type, pcall, setmetatable, tostring
local clock, decode, running_co = host.now, json.decode, coroutine.running

local _M = {}

local INFLIGHT_SET = "mc:inflight"   -- identities that may have in-flight lists
local INFLIGHT_THREADS = "mc:inflight:threads" -- identity -> its thread count
local RECOVERIES = "mc:recoveries"   -- jid -> how often its process died under it
local MAX_RECOVERIES = 3
local STATS_TTL = 5 * 365 * 24 * 3600 -- Sidekiq keeps the dated counters 5 years

-- ---- queues ----------------------------------------------------------------

-- A process's in-flight lists: one per thread (inflight:<identity>:<thread>),
-- so that the thread's settle finds its jobs at the list's tail at once, not
-- behind every other thread's (LREM scans); and inflight:<identity>, which
-- processes of earlier versions used, still looked at by recovery and strays.
local function inflight_key(identity, thread)
  if thread == nil then return "inflight:" .. identity end
  return "inflight:" .. identity .. ":" .. thread
end

-- inflight_keys(identity, threads) -> every in-flight list the process may have
local function inflight_keys(identity, threads)
  local keys = { inflight_key(identity) }
  for t = 1, threads do keys[#keys + 1] = inflight_key(identity, t) end
  return keys
end
_M.inflight_keys = inflight_keys

-- parse_queues("critical:3,default:1") -> {{name=, weight=}, ...} | nil, err
function _M.parse_queues(spec)
  local list = {}
  for item in spec:gmatch("[^,%s]+") do
    local name, weight = item:match("^([%w_%-%.]+):?(%d*)$")
    if not name then return nil, "bad queue entry " .. item end
    weight = tonumber(weight) or 1
    if weight < 1 then return nil, "queue weight must be >= 1: " .. item end
    list[#list + 1] = { name = name, weight = weight, key = "queue:" .. name }
  end
  if #list == 0 then return nil, "no queues" end
  return list
end

-- A fetch order: weighted random without replacement (a queue of weight 3 comes
-- first three times as often as one of weight 1, and none starves).
local function order(queues)
  if #queues == 1 then return queues end
  local pool, total, out = {}, 0, {}
  for i, q in ipairs(queues) do pool[i] = q; total = total + q.weight end
  while #pool > 0 do
    local pick = math.random() * total
    for i, q in ipairs(pool) do
      pick = pick - q.weight
      if pick <= 0 or i == #pool then
        out[#out + 1] = q
        total = total - q.weight
        table.remove(pool, i)
        break
      end
    end
  end
  return out
end

-- ---- one job ---------------------------------------------------------------

-- Moves a job from an in-flight list back to the front of its queue (the right
-- end: fetched next), atomically: the one way a job not run to its end goes
-- back (a fetch the worker will not run, a stray, one cut off by shutdown).
local function give_back(r, inflight, body, queue)
  return r:pipeline(function(p)
    p:call("MULTI")
    p:call("LREM", inflight, 1, body)
    p:call("RPUSH", "queue:" .. queue, body)
    p:call("EXEC")
  end)
end

-- fetch(r, queues, inflight) -> body, queue | nil (none) | nil, err
local function fetch(r, queues, inflight)
  local list = order(queues)
  for _, q in ipairs(list) do
    local body, err = r:call("LMOVE", "queue:" .. q.name, inflight, "RIGHT", "LEFT")
    if body == nil then return nil, err end
    if body ~= mc.null then return body, q.name end
  end
  -- all empty: wait a moment on the first, so an idle worker does not spin
  local body, err = r:call("BLMOVE", "queue:" .. list[1].name, inflight, "RIGHT", "LEFT", "0.2")
  if body == nil then return nil, err end
  if body ~= mc.null then return body, list[1].name end
  return nil
end

local function today() return os.date("!%Y-%m-%d") end

-- Queues on p the MULTI that removes the finished jobs from the in-flight list
-- and records how each ended: a crash can not leave a job both done and in
-- flight. One MULTI per batch, the counters bumped once by the batch's count
-- (as Sidekiq's own INCRBY does). LREM from the tail: the list grows at the
-- head, so the jobs that finish first are found there at once. (The dated
-- counters get their TTL from the heartbeat, not once per job.)
local function settle_into(p, inflight, finished, now, day)
  p:call("MULTI")
  local failed = 0
  for _, done in ipairs(finished) do
    local body, job = done.body, done.job
    p:call("LREM", inflight, "-1", body) -- a string: a number is formatted per call
    if not done.ok then
      failed = failed + 1
      if job then
        local where, at = jobs.fail(job, done.err)
        if where == "retry" then
          p:call("ZADD", "retry", string.format("%.6f", at), json.encode(job))
        else
          jobs.bury(p, job, now)
        end
        p:call("HDEL", RECOVERIES, job.jid or "")
      else
        p:call("ZADD", "dead", string.format("%.6f", now), body) -- not JSON: no retries
      end
    end
  end
  -- as Sidekiq counts: processed = every job run, failed ones included
  p:call("INCRBY", "stat:processed", #finished)
  p:call("INCRBY", "stat:processed:" .. day, #finished)
  if failed > 0 then
    p:call("INCRBY", "stat:failed", failed)
    p:call("INCRBY", "stat:failed:" .. day, failed)
  end
  p:call("EXEC")
end

-- A job fetched: the table that follows it to its settle, its fields all made
-- at once (filled in later, they would grow it).
local function new_item(body, queue)
  return { body = body, queue = queue, slot = false, job = false, ok = false, err = false }
end

-- Settles the finished jobs and fetches up to `room` more (each from a queue
-- picked by weight, as fetch does), in one round trip -> {{body, queue}, ...}
-- | nil, err (then the finished jobs stay in flight: recovery runs them again,
-- at least once; and what was fetched is found as strays).
local function settle_and_fetch(r, inflight, finished, room, queues)
  local picks = {}
  local res, err = r:pipeline(function(p)
    if #finished > 0 then settle_into(p, inflight, finished, jobs.now(), today()) end
    for i = 1, room do
      local q = order(queues)[1]
      picks[i] = q.name
      p:call("LMOVE", q.key, inflight, "RIGHT", "LEFT")
    end
  end)
  if not res then return nil, err end
  local got, base = {}, #res - room
  for i = 1, room do
    local body = res[base + i]
    if type(body) == "string" then got[#got + 1] = new_item(body, picks[i]) end
  end
  return got
end

-- ctx.log is made on first use: most jobs never log.
local CTX = { __index = function(ctx, k)
  if k ~= "log" then return nil end
  local l = log.with({ class = ctx.class, jid = ctx.jid })
  rawset(ctx, "log", l)
  return l
end }

-- The "job done" lines of a thread wait here and leave together, once per
-- round trip to Redis (stdout is line-buffered: a line per job was a write(2)
-- per job); a failure's line flushes them first, so the order holds. They wait
-- as their pieces, joined once per flush: no string made per job.
local done_parts, n_done_parts = {}, 0

local function flush_log()
  if n_done_parts == 0 then return end
  io.stdout:write(table.concat(done_parts, "", 1, n_done_parts))
  n_done_parts = 0 -- the entries past it are overwritten by the next lines
end

-- Values mc.log prints bare and redact leaves alone (no space, no "://"): the
-- line can be written straight, and reads as log.format's. The answers for
-- class and queue names are kept (a few names, seen by every job), dropped when
-- they pass PLAIN_KEPT: names come from the payloads.
local PLAIN = "^[%w_.:%-]+$"
local PLAIN_KEPT = 256
local plain_names, n_plain_names = {}, 0

local function plain(name)
  local v = plain_names[name]
  if v == nil then
    v = name:find(PLAIN) ~= nil
    if n_plain_names >= PLAIN_KEPT then plain_names, n_plain_names = {}, 0 end
    plain_names[name], n_plain_names = v, n_plain_names + 1
  end
  return v
end

local function log_done(class, jid, queue, ms)
  if type(jid) == "string" and plain(class) and plain(queue) and (jid:find("^%x+$") or jid:find(PLAIN)) then
    local n = n_done_parts
    done_parts[n + 1] = 'at=info msg="job done" class='
    done_parts[n + 2] = class
    done_parts[n + 3] = " duration_ms="
    done_parts[n + 4] = ms
    done_parts[n + 5] = " jid="
    done_parts[n + 6] = jid
    done_parts[n + 7] = " queue="
    done_parts[n + 8] = queue
    done_parts[n + 9] = "\n"
    n_done_parts = n + 9
  else
    local n = n_done_parts
    done_parts[n + 1] = log.format("info", "job done", { class = class, jid = jid, queue = queue, duration_ms = ms })
    done_parts[n + 2] = "\n"
    n_done_parts = n + 2
  end
end

-- millis(seconds) -> milliseconds as "%.1f" prints them; those under 100 ms,
-- most jobs' durations, kept once made (a float's printf is not cheap).
local MILLIS_KEPT = 1000 -- tenths of a millisecond
local millis_text = {}

local function millis(seconds)
  local tenths = math.floor(seconds * 10000 + 0.5)
  if tenths >= MILLIS_KEPT or tenths < 0 then return string.format("%.1f", tenths / 10) end
  local text = millis_text[tenths]
  if not text then
    text = string.format("%.1f", tenths / 10)
    millis_text[tenths] = text
  end
  return text
end

-- Runs one job (in its coroutine) -> job (decoded, or nil), ok, err.
local function perform(body, queue, limit, log_info)
  local started = clock()
  local job = decode(body)
  local ok, err, trace
  if type(job) ~= "table" or type(job.class) ~= "string" then
    job, err = nil, "job is not valid JSON"
  else
    local ctx = setmetatable({ jid = job.jid, queue = queue, retry_count = job.retry_count,
                               class = job.class }, CTX)
    ok, err, trace = jobs.perform(job, ctx, limit)
  end
  local ms = millis(clock() - started)
  if ok then
    if log_info then log_done(job.class, job.jid, queue, ms) end
  else
    flush_log()
    log.warn("job failed", { class = job and job.class, jid = job and job.jid, queue = queue,
                             duration_ms = ms, error = trace or err })
  end
  return job, ok, err
end

-- Runs the job of item {body, queue} (in its coroutine), gives its connections
-- back, and fills in how it ended: item.job (decoded, or nil), item.ok, item.err.
local function run_job(item, limit, log_info)
  local ok, job, jok, jerr = pcall(perform, item.body, item.queue, limit, log_info)
  conns.release(running_co())
  if not ok then job, jok, jerr = nil, false, "worker: " .. tostring(job) end
  item.job, item.ok, item.err = job, jok, jerr
end

local DEFAULT_INFLIGHT = 200
local REFILL_MAX = 32      -- LMOVEs per round trip
local REFILL_BACKOFF = 0.1 -- seconds before asking an empty queue again, while jobs run
local QUICK_START = 0.01   -- seconds: fetched jobs that all started within it -> fetch more

-- WORKER_INFLIGHT: jobs in flight per thread
local function inflight_per_thread()
  return env.int("WORKER_INFLIGHT", DEFAULT_INFLIGHT, { min = 1, max = 10000 })
end

-- The entry point of each worker thread's state: one round of jobs. It fetches
-- a job (or waits a little when there is none, or the worker is quiet or
-- stopping), then runs up to WORKER_INFLIGHT jobs at once, each in a coroutine
-- of mc.sched that yields while it waits on the network, settling the finished
-- ones and fetching more in one round trip, until none is left in flight. Once
-- the worker stops or is quieted, or a reload replaced this state's code, it
-- fetches no more: the jobs in flight finish on the code they started with, and
-- the next round borrows a state with the new code.
--
-- A job's coroutine is a runner that, its job done without waiting, takes the
-- next job fetched (a coroutine per job was a good part of a short job's cost);
-- one whose job waited ends with it, the jobs fetched meanwhile having each got
-- a runner of their own, so jobs still run side by side.
function _M.thread_entry()
  local identity = native.identity()
  local queues = assert(_M.parse_queues(env.str("WORKER_QUEUES", "default")))
  local limit = env.number("JOB_TIMEOUT", 600, { min = 0.001 })
  local per_thread = inflight_per_thread()
  local per_conns = env.int("WORKER_CONNECTIONS", 5, { min = 1, max = 10000 })
  conns.limit("pg", per_conns, limit)
  conns.limit("redis", per_conns, limit)
  return function(index)
    if native.state() ~= "running" then return host.sleep(0.1) end
    local inflight = inflight_key(identity, index)
    local r, err = jobs.redis()
    if not r then
      log.error("worker cannot reach redis", { error = err })
      return host.sleep(1)
    end
    local body, queue_or_err = fetch(r, queues, inflight)
    if not body then
      if queue_or_err then
        log.error("fetch failed", { error = queue_or_err })
        host.sleep(1)
      end
      return
    end
    -- fetched while the worker was quieted or stopped, or onto a state whose code
    -- a reload replaced: back to the front of the queue
    if native.state() ~= "running" or native.stale() then
      return give_back(r, inflight, body, queue_or_err)
    end
    local log_info = log.enabled("info")
    local s = sched.new()
    local free, finished = {}, {}
    local pending, next_pending = {}, 1 -- fetched jobs no runner has taken yet
    for k = per_thread, 1, -1 do free[#free + 1] = (index - 1) * per_thread + k end
    local function runner(mine)
      while true do
        local item = pending[next_pending]
        if not item then return end
        pending[next_pending], next_pending = nil, next_pending + 1
        mine.item = item
        run_job(item, limit, log_info)
        mine.item = nil
        finished[#finished + 1] = item
      end
    end
    local function add(item)
      item.slot = table.remove(free)
      native.set_current(item.slot, item.queue, item.body)
      pending[#pending + 1] = item
    end
    -- runs the pending jobs: each runner goes on until its job waits, then the next
    local function start_pending()
      while pending[next_pending] do
        local mine = {}
        s:spawn(runner, function(ok, rerr)
          local item = mine.item -- the runner itself failed (out of memory): the job with it
          if not ok and item then
            item.job, item.ok, item.err = nil, false, "worker: " .. tostring(rerr)
            finished[#finished + 1] = item
          end
        end, mine)
      end
      pending, next_pending = {}, 1
    end
    -- How many to fetch at once: doubled while the jobs it fetched started (ran to
    -- their first wait, or to their end) in a moment, back to one when they took
    -- longer (jobs that block their thread: fetched ahead they would only wait
    -- here, where no other thread can take them); and as many as are in flight
    -- (waiting on the network), so that a thread of such jobs fills up fast.
    local fetching, next_refill, batch = true, 0, 1
    add(new_item(body, queue_or_err))
    start_pending()
    while true do
      if fetching and (native.state() ~= "running" or native.stale()) then fetching = false end
      local room = 0
      -- none while a job waits for a pooled connection: threads with room take them
      if fetching and host.now() >= next_refill and conns.waiting() == 0 then
        room = math.min(#free, REFILL_MAX, math.max(batch, s:count()))
      end
      if #finished > 0 or room > 0 then
        local done = finished
        finished = {}
        flush_log()
        local got, serr = settle_and_fetch(r, inflight, done, room, queues)
        for _, d in ipairs(done) do
          native.clear_current(d.slot)
          free[#free + 1] = d.slot
        end
        if not got then
          log.error("could not settle jobs", { jobs = #done, error = serr })
          got = {}
        end
        if #got < room then next_refill = host.now() + REFILL_BACKOFF end
        if #got > 0 then
          if native.state() ~= "running" or native.stale() then
            for _, g in ipairs(got) do give_back(r, inflight, g.body, g.queue) end
          else
            local t0 = host.now()
            for _, g in ipairs(got) do add(g) end
            start_pending()
            batch = host.now() - t0 < QUICK_START and math.min(batch * 2, REFILL_MAX) or 1
          end
        end
      end
      if s:count() > 0 then
        s:step(REFILL_BACKOFF)
      elseif #finished == 0 and (not fetching or host.now() < next_refill) then
        flush_log()
        return
      end
    end
  end
end

-- ---- the main thread -------------------------------------------------------

-- Moves due members of a sorted set to their queues, one at a time, atomically
-- (as Sidekiq's scheduler does); stamps enqueued_at into the JSON text itself so
-- that the payload is not re-encoded by Redis's cjson (which turns [] into {}
-- and rounds large numbers). A retry already has one: its value is replaced,
-- not followed by a second (a duplicate key, which mc.json refuses), found by a
-- scan that skips strings and nested values (args may hold the same name).
local ENQUEUE_DUE = [=[
local function stamp(body, now)
  local appended = body:sub(1, -2) .. ',"enqueued_at":' .. now .. '}'
  local depth, i = 0, 1
  while true do
    i = body:find('[%"{}%[%]]', i)
    if not i then break end
    local c = body:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        local k = body:find('[\\"]', j)
        if not k then return appended end
        if body:sub(k, k) == '"' then j = k break end
        j = k + 2
      end
      local after = body:find('%S', j + 1)
      if depth == 1 and after and body:sub(after, after) == ':' and body:sub(i, j) == '"enqueued_at"' then
        local _, last = body:find('^%s*[-+%d.eE]+', after + 1)
        if last then return body:sub(1, after) .. now .. body:sub(last + 1) end
      end
      i = j + 1
    else
      depth = depth + ((c == '{' or c == '[') and 1 or -1)
      i = i + 1
    end
  end
  return appended
end

local moved = 0
while moved < tonumber(ARGV[2]) do
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #due == 0 then break end
  local body = due[1]
  redis.call('ZREM', KEYS[1], body)
  local ok, job = pcall(cjson.decode, body)
  if ok and type(job) == 'table' and type(job.queue) == 'string' and body:sub(-1) == '}' then
    local stamped = stamp(body, ARGV[1])
    redis.call('SADD', 'queues', job.queue)
    redis.call('LPUSH', 'queue:' .. job.queue, stamped)
  else
    redis.call('ZADD', 'dead', ARGV[1], body)
  end
  moved = moved + 1
end
return moved
]=]

-- Pushes a dead process's in-flight jobs back; a job whose processes died under
-- it MAX_RECOVERIES times is a poison pill and goes to the dead set instead of
-- killing workers forever. Which of several jobs in flight killed the process
-- cannot be told, and put back together they would be fetched together again
-- and die together: the poison's neighbours buried with it. So the first goes
-- to the right end of its queue (next to be fetched) and the others to the
-- schedule, ARGV[3] seconds apart (two polls: each comes back on its own). A
-- process runs many jobs at once (WORKER_INFLIGHT), so past the first ten they
-- come back in waves that double (2, 4, 8, ...): a thousand jobs in 20 waves,
-- not in a thousand.
local RECOVER = [[
local moved, buried, kept = 0, 0, 0
for i = 2, #KEYS do
  while true do
    local body = redis.call('RPOP', KEYS[i])
    if not body then break end
    local ok, job = pcall(cjson.decode, body)
    if not ok or type(job) ~= 'table' or type(job.queue) ~= 'string' then
      redis.call('ZADD', 'dead', ARGV[2], body)
      buried = buried + 1
    else
      local n = redis.call('HINCRBY', KEYS[1], tostring(job.jid), 1)
      if n >= tonumber(ARGV[1]) then
        redis.call('ZADD', 'dead', ARGV[2], body)
        redis.call('HDEL', KEYS[1], tostring(job.jid))
        buried = buried + 1
      elseif kept == 0 then
        redis.call('SADD', 'queues', job.queue)
        redis.call('RPUSH', 'queue:' .. job.queue, body)
        kept = 1
      else
        local wave = kept
        if kept > 10 then -- 11 + floor(log2(kept - 10)), in integers
          wave = 11
          local m = kept - 10
          while m >= 2 do wave, m = wave + 1, math.floor(m / 2) end
        end
        redis.call('ZADD', 'schedule', string.format('%.6f', tonumber(ARGV[2]) + wave * tonumber(ARGV[3])), body)
        kept = kept + 1
      end
    end
  end
end
return {kept, buried}
]]

local function heartbeat(r, cfg)
  local now = jobs.now()
  local current = native.current()
  local info = json.encode({
    hostname = cfg.hostname, started_at = cfg.started_at, pid = host.pid(), tag = "multiconnect",
    concurrency = cfg.concurrency, queues = cfg.queue_names, labels = json.empty_array,
    identity = cfg.identity,
  })
  local quiet = native.state() ~= "running" and "true" or "false"
  local res, err = r:pipeline(function(p)
    p:call("SADD", "processes", cfg.identity)
    p:call("HSET", cfg.identity, "info", info, "busy", #current, "beat", string.format("%.6f", now),
      "quiet", quiet, "concurrency", cfg.concurrency)
    p:call("EXPIRE", cfg.identity, cfg.ttl)
    p:call("DEL", cfg.identity .. ":workers")
    for _, c in ipairs(current) do
      p:call("HSET", cfg.identity .. ":workers", "t" .. c.index, json.encode({
        queue = c.queue, payload = c.payload, run_at = math.floor(c.started) }))
    end
    p:call("EXPIRE", cfg.identity .. ":workers", cfg.ttl)
    -- the TTL of today's counters, set here rather than once per job
    local day = os.date("!%Y-%m-%d")
    p:call("EXPIRE", "stat:processed:" .. day, STATS_TTL)
    p:call("EXPIRE", "stat:failed:" .. day, STATS_TTL)
    p:call("RPOP", cfg.identity .. "-signals")
  end)
  if not res then return nil, err end
  -- Sidekiq's API and Web UI (Process#quiet!, #stop!) LPUSH TSTP or TERM here; the
  -- signal then takes the same path as one sent from the shell
  local sig = res[#res]
  if sig == "TSTP" or sig == "TERM" then
    log.info("signal from redis", { signal = sig })
    os.execute(string.format("kill -%s %d", sig, host.pid()))
  end
  return res
end

-- Finds processes that stopped beating and pushes their in-flight jobs back
-- (RECOVER; spacing: the seconds between those that come back through the
-- schedule, default 10).
function _M.recover_orphans(r, self_identity, spacing)
  -- the thread counts' hash too: a process of an earlier version that recovers a
  -- dead one of this version knows only inflight:<identity>, and takes the
  -- identity out of the set with the thread lists still there
  local res0, err = r:pipeline(function(p)
    p:call("SMEMBERS", INFLIGHT_SET)
    p:call("HKEYS", INFLIGHT_THREADS)
  end)
  if not res0 then return nil, err end
  local members, known = {}, {}
  for _, list in ipairs(res0) do
    if list.err then return nil, list.err end
    for _, identity in ipairs(list) do
      if not known[identity] then known[identity], members[#members + 1] = true, identity end
    end
  end
  local moved, buried = 0, 0
  for _, identity in ipairs(members) do
    if identity ~= self_identity and r:call("EXISTS", identity) == 0 then
      local threads, terr = r:call("HGET", INFLIGHT_THREADS, identity)
      if not threads then return nil, terr end
      local keys = inflight_keys(identity, tonumber(threads ~= mc.null and threads or 0) or 0)
      table.insert(keys, 1, RECOVERIES)
      local res, eerr = r:eval(RECOVER, keys,
        { MAX_RECOVERIES, string.format("%.6f", jobs.now()), string.format("%.3f", spacing or 10) })
      if not res then return nil, eerr end
      r:pipeline(function(p)
        p:call("SREM", INFLIGHT_SET, identity)
        p:call("HDEL", INFLIGHT_THREADS, identity)
      end)
      moved, buried = moved + res[1], buried + res[2]
      if res[1] + res[2] > 0 then
        log.warn("recovered jobs of a dead process", { process = identity, requeued = res[1], dead = res[2] })
      end
    end
  end
  return moved, buried
end

-- Jobs in this live process's own in-flight list that no thread runs, seen so on
-- two checks a grace period apart, were lost by their fetcher (the reply to its
-- LMOVE never arrived: the job moved, the thread never knew). Pushes them back to
-- their queues. suspects: the bodies seen idle last time -> the ones seen now.
function _M.requeue_strays(r, identity, suspects, threads)
  local keys = inflight_keys(identity, threads or 0)
  local lists, err = r:pipeline(function(p)
    for _, key in ipairs(keys) do p:call("LRANGE", key, 0, -1) end
  end)
  if not lists then return nil, err end
  local running = {}
  for _, c in ipairs(native.current()) do running[c.payload] = true end
  local seen = {}
  for i, inflight in ipairs(keys) do
    for _, body in ipairs(lists[i]) do
      if not running[body] then
        if suspects[body] then
          local job = json.decode(body)
          local queue = type(job) == "table" and type(job.queue) == "string" and job.queue or "default"
          give_back(r, inflight, body, queue)
          log.warn("pushed back a job no thread was running",
            { jid = type(job) == "table" and job.jid or nil, queue = queue })
        else
          seen[body] = true
        end
      end
    end
  end
  return seen
end

-- Moves due scheduled jobs and retries to their queues.
function _M.enqueue_due(r)
  local now = string.format("%.6f", jobs.now())
  local total = 0
  for _, set in ipairs({ "retry", "schedule" }) do
    local n, err = r:eval(ENQUEUE_DUE, { set }, { now, 100 })
    if not n then return nil, err end
    total = total + n
  end
  return total
end

-- `multiconnect worker`; opts.watch: the folders under MC_ROOT whose edits
-- reload the job code.
function _M.serve(opts)
  opts = opts or {}
  local hostname = os.getenv("DYNO") or host.hostname()
  local cfg = {
    hostname = hostname,
    identity = hostname .. ":" .. host.pid() .. ":" .. crypto.to_hex(crypto.random(6)),
    concurrency = env.int("WORKER_CONCURRENCY", 5, { min = 1, max = 200 }),
    inflight = inflight_per_thread(),
    ttl = env.int("WORKER_HEARTBEAT_TTL", 60, { min = 2 }),
    poll = env.number("WORKER_POLL_INTERVAL", 5, { min = 0.05 }),
    stray_grace = env.number("WORKER_STRAY_GRACE", 30, { min = 0.1 }),
    started_at = jobs.now(),
  }
  local queues, qerr = _M.parse_queues(env.str("WORKER_QUEUES", "default"))
  if not queues then error("WORKER_QUEUES: " .. qerr, 0) end
  cfg.queue_names = {}
  for i, q in ipairs(queues) do cfg.queue_names[i] = q.name end
  local r, err = jobs.redis()
  if not r then
    io.stderr:write("multiconnect worker: ", err, "\n")
    return 1
  end
  assert(r:pipeline(function(p)
    p:call("SADD", INFLIGHT_SET, cfg.identity)
    p:call("HSET", INFLIGHT_THREADS, cfg.identity, cfg.concurrency)
  end))
  local beat_every = math.min(5, cfg.ttl / 3)
  local last_beat, last_poll, last_recover, last_strays = -math.huge, -math.huge, -math.huge, -math.huge
  local suspects = {}
  local last_state
  local function tick()
    local now = host.now()
    local state = native.state()
    if state ~= last_state then -- quieted: say so at once
      last_state, last_beat = state, -math.huge
    end
    if now - last_beat >= beat_every then
      last_beat = now
      local ok, berr = heartbeat(r, cfg)
      if not ok then log.error("heartbeat failed", { error = berr }) end
    end
    if now - last_poll >= cfg.poll * (0.5 + math.random()) then
      last_poll = now
      local ok, perr = _M.enqueue_due(r)
      if not ok then log.error("scheduler failed", { error = perr }) end
    end
    if now - last_recover >= math.min(15, cfg.ttl) then
      last_recover = now
      local ok, rerr = _M.recover_orphans(r, cfg.identity, 2 * cfg.poll)
      if not ok then log.error("orphan recovery failed", { error = rerr }) end
    end
    if now - last_strays >= cfg.stray_grace then
      last_strays = now
      local seen, serr = _M.requeue_strays(r, cfg.identity, suspects, cfg.concurrency)
      if seen then suspects = seen else log.error("stray check failed", { error = serr }) end
    end
  end
  local function requeue()
    for _, c in ipairs(native.current()) do
      -- slot c.index is thread t's: (t - 1) * inflight + 1 .. t * inflight
      give_back(r, inflight_key(cfg.identity, (c.index - 1) // cfg.inflight + 1), c.payload, c.queue)
      log.warn("pushed back an unfinished job", { queue = c.queue })
    end
  end
  local function stopped()
    local lens = r:pipeline(function(p)
      for _, key in ipairs(inflight_keys(cfg.identity, cfg.concurrency)) do p:call("LLEN", key) end
    end)
    local left = 0
    for _, n in ipairs(lens or {}) do left = left + (math.type(n) == "integer" and n or 1) end
    r:pipeline(function(p)
      p:call("SREM", "processes", cfg.identity)
      p:call("DEL", cfg.identity, cfg.identity .. ":workers")
      -- in-flight lists that are not empty stay known, for recovery
      if lens and left == 0 then
        p:call("SREM", INFLIGHT_SET, cfg.identity)
        p:call("HDEL", INFLIGHT_THREADS, cfg.identity)
      end
    end)
  end
  log.info("worker starting", { identity = cfg.identity, concurrency = cfg.concurrency, inflight = cfg.inflight,
                                queues = table.concat(cfg.queue_names, ",") })
  local ok, rerr = native.run({
    identity = cfg.identity, concurrency = cfg.concurrency, inflight = cfg.inflight,
    shutdown_timeout = env.number("SHUTDOWN_TIMEOUT", 25, { min = 0 }),
    reload = env.bool("MC_RELOAD", true), watch = opts.watch, tick = tick, requeue = requeue, stopped = stopped,
  })
  if not ok then
    io.stderr:write("multiconnect worker: ", rerr, "\n")
    return 1
  end
  return 0
end

return _M
