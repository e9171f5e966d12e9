-- mc.jobs: background jobs on Redis, in Sidekiq 6's layout and payload, so that
-- Sidekiq's own client, API and Web UI read and write the same queues.
--
--   local jobs = require "mc.jobs"
--   local jid = jobs.enqueue("onboarding.advance", { org_id }, { queue = "critical", ["in"] = 30 })
--
-- A job is a module under scripts/jobs/ (jobs.onboarding.advance is
-- scripts/jobs/onboarding/advance.lua) exporting perform(args, ctx); a job fails
-- when perform raises, returns nil, err, or runs past its time limit.
--
-- Layout (docs/reliability.md §1): `queues` set, `queue:<name>`
-- lists (LPUSH, fetched from the right), `schedule`/`retry`/`dead` sorted sets
-- scored by float epoch seconds, `stat:processed`/`stat:failed` counters. Fetch is
-- reliable: LMOVE into `inflight:<identity>:<thread>`, removed when the job is done, pushed
-- back by whoever finds the process dead (see mc.worker).
local json = require "mc.json"
local conns = require "mc.conns"
local crypto = require "mc.crypto"
local host = require "mc.host"

local _M = {}

_M.DEFAULT_RETRIES = 25
_M.DEAD_MAX_JOBS = 10000
_M.DEAD_TIMEOUT = 180 * 24 * 3600
_M.ERROR_MAX = 10000

local NAME_PATTERN = "^[%a_][%w_]*[%.%w_]*$"

-- ---- time and connection -------------------------------------------------------

function _M.now()
  return host.time()
end

-- The state's Redis connection (mc.conns: one per state, shared with the
-- application). jobs.use(r): make r that connection (another db, a test server).
_M.redis = conns.redis
function _M.use(r) conns.use("redis", r) end

-- ---- payloads --------------------------------------------------------------------

local function check_args(args)
  if args == nil then return json.empty_array end
  if type(args) ~= "table" then error("jobs: args must be an array", 3) end
  local n = 0
  for k in pairs(args) do
    if math.type(k) ~= "integer" or k < 1 then error("jobs: args must be an array", 3) end
    n = n + 1
  end
  if n ~= #args then error("jobs: args must be an array without holes", 3) end
  return n == 0 and json.empty_array or args
end

local function retry_option(retry)
  if retry == nil then return true end
  if retry == false or retry == true then return retry end
  if math.type(retry) == "integer" and retry >= 0 then return retry end
  error("jobs: retry must be true, false or a count", 3)
end

-- payload(name, args, opts) -> job table (not yet encoded)
function _M.payload(name, args, opts)
  if type(name) ~= "string" or not name:match(NAME_PATTERN) then
    error("jobs: bad job name " .. tostring(name), 2)
  end
  opts = opts or {}
  local queue = opts.queue or "default"
  if type(queue) ~= "string" or not queue:match("^[%w_%-%.:]+$") then
    error("jobs: bad queue name " .. tostring(queue), 2)
  end
  return {
    class = name,
    args = check_args(args),
    jid = crypto.to_hex(crypto.random(12)),
    queue = queue,
    retry = retry_option(opts.retry),
    created_at = _M.now(),
  }
end

-- The time to run at, from opts.at (epoch seconds) or opts["in"] (seconds).
local function run_at(opts)
  if opts == nil then return nil end
  local at, delay = opts.at, opts["in"]
  if at ~= nil and delay ~= nil then error("jobs: give at or in, not both", 3) end
  if delay ~= nil then
    if type(delay) ~= "number" then error("jobs: in must be seconds", 3) end
    return _M.now() + delay
  end
  if at ~= nil and type(at) ~= "number" then error("jobs: at must be epoch seconds", 3) end
  return at
end

-- Pushes an encoded-ready job to its queue now (pipelined SADD + LPUSH).
function _M.push(r, job)
  job.enqueued_at = _M.now()
  local body, err = json.encode(job)
  if not body then error("jobs: args JSON cannot hold: " .. err, 3) end
  local res, perr = r:pipeline(function(p)
    p:call("SADD", "queues", job.queue)
    p:call("LPUSH", "queue:" .. job.queue, body)
  end)
  if not res then return nil, perr end
  if type(res[2]) == "table" then return nil, res[2].err end
  return job.jid
end

-- enqueue(name, args, {queue =, at = | ["in"] =, retry =}) -> jid | nil, err
function _M.enqueue(name, args, opts)
  local job = _M.payload(name, args, opts)
  local at = run_at(opts)
  local r, err = _M.redis()
  if not r then return nil, err end
  if at and at > _M.now() then
    local body, jerr = json.encode(job)
    if not body then error("jobs: args JSON cannot hold: " .. jerr, 2) end
    local ok, zerr = r:call("ZADD", "schedule", string.format("%.6f", at), body)
    if not ok then return nil, zerr end
    return job.jid
  end
  return _M.push(r, job)
end

-- ---- failures --------------------------------------------------------------------

-- Sidekiq 6's schedule: count^4 + 15 + rand(10) * (count + 1) seconds.
function _M.backoff(count)
  return count ^ 4 + 15 + math.random(0, 9) * (count + 1)
end

local function max_retries(job)
  if job.retry == false then return 0 end
  if math.type(job.retry) == "integer" then return job.retry end
  return _M.DEFAULT_RETRIES
end

-- fail(job, message) -> "retry", at | "dead": updates job's error fields and says
-- where it goes next (the caller writes it there, atomically with the ack).
function _M.fail(job, message)
  local now = _M.now()
  message = tostring(message)
  if #message > _M.ERROR_MAX then message = message:sub(1, _M.ERROR_MAX) end
  job.error_class = "Lua::Error"
  job.error_message = message
  if job.retry_count == nil then
    job.retry_count = 0
    job.failed_at = now
  else
    job.retry_count = job.retry_count + 1
    job.retried_at = now
  end
  if job.retry_count < max_retries(job) then
    return "retry", now + _M.backoff(job.retry_count)
  end
  return "dead", now
end

-- Adds the commands that bury job in the dead set (capped by age and size) to p.
function _M.bury(p, job, now)
  p:call("ZADD", "dead", string.format("%.6f", now), json.encode(job))
  p:call("ZREMRANGEBYSCORE", "dead", "-inf", string.format("%.6f", now - _M.DEAD_TIMEOUT))
  p:call("ZREMRANGEBYRANK", "dead", 0, -(_M.DEAD_MAX_JOBS + 1))
end

-- ---- performing ------------------------------------------------------------------

-- exists(name[, root]) -> true | nil, err: whether name is a job, a module
-- scripts/jobs/NAME.lua (or NAME/init.lua) under root (default MC_ROOT). The one
-- check behind load, the clock's schedule and `run jobs:NAME`.
function _M.exists(name, root)
  if type(name) ~= "string" or not name:match(NAME_PATTERN) then
    return nil, "bad job name " .. tostring(name)
  end
  local dir = (root or host.root) .. "/scripts/"
  if package.searchpath("jobs." .. name, dir .. "?.lua;" .. dir .. "?/init.lua") then return true end
  return nil, string.format("no job %s (scripts/jobs/%s.lua)", name, (name:gsub("%.", "/")))
end

-- load(name) -> module | nil, err (the job's module under scripts/jobs/). A
-- name once loaded is not looked up on disk again while package.loaded still
-- holds its module (a reload builds new states, so new code is not missed):
-- the look-up opens a file, which cost more than a no-op job's whole run.
local loaded = {} -- name -> { module name, module }

function _M.load(name)
  local hit = loaded[name]
  if hit and package.loaded[hit[1]] == hit[2] then return hit[2] end
  local found, err = _M.exists(name)
  if not found then return nil, err end
  local ok, mod = pcall(require, "jobs." .. name)
  if not ok then return nil, tostring(mod) end
  if type(mod) ~= "table" or type(mod.perform) ~= "function" then
    return nil, "jobs." .. name .. " has no perform(args, ctx)"
  end
  loaded[name] = { "jobs." .. name, mod }
  return mod
end

local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

-- The time limit's hook, one function for every job: each coroutine running a
-- job has its deadline here (the hook is per coroutine, as is the job).
local deadlines = setmetatable({}, { __mode = "k" })
local running = coroutine.running

local function over_time()
  local deadline = deadlines[running()]
  if deadline and host.now() > deadline then error("job exceeded its time limit", 2) end
end

-- perform(job, ctx, limit) -> true | nil, err[, traceback]. Runs the job's perform under
-- pcall with a time limit (seconds) checked every 10,000 VM instructions: a
-- job blocked inside C (a slow HTTP call) is bounded by that call's own timeout.
function _M.perform(job, ctx, limit)
  local mod, err = _M.load(job.class)
  if not mod then return nil, err end
  local co = running()
  deadlines[co] = host.now() + (limit or 600)
  debug.sethook(over_time, "", 10000)
  local ok, res, perr = xpcall(mod.perform, traceback, job.args, ctx or {})
  debug.sethook()
  deadlines[co] = nil
  if not ok then -- the message alone is the job's error; the traceback is third
    return nil, (res:match("^(.-)\nstack traceback:") or res), res
  end
  if res == nil and perr ~= nil then return nil, tostring(perr) end
  return true
end

-- ---- stats -----------------------------------------------------------------------

function _M.stats()
  local r, err = _M.redis()
  if not r then return nil, err end
  local res, perr = r:pipeline(function(p)
    p:call("GET", "stat:processed")
    p:call("GET", "stat:failed")
    p:call("ZCARD", "schedule")
    p:call("ZCARD", "retry")
    p:call("ZCARD", "dead")
    p:call("SMEMBERS", "queues")
    p:call("SCARD", "processes")
  end)
  if not res then return nil, perr end
  local queues = {}
  for _, q in ipairs(res[6]) do queues[q] = r:call("LLEN", "queue:" .. q) end
  local function num(v) return tonumber(v ~= mc.null and v or 0) or 0 end
  return {
    processed = num(res[1]), failed = num(res[2]), scheduled = res[3], retries = res[4],
    dead = res[5], queues = queues, processes = res[7],
  }
end

-- ---- the dead set (operators: `multiconnect jobs`, the console) ------------------

-- dead([limit]) -> the newest dead jobs first (default 50), each the decoded job
-- with `died_at` (its score); an entry that is not JSON comes as { raw = body }.
function _M.dead(limit)
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 1) then
    error("jobs.dead: limit must be a positive integer", 2)
  end
  local r, err = _M.redis()
  if not r then return nil, err end
  local res, zerr = r:call("ZREVRANGE", "dead", 0, (limit or 50) - 1, "WITHSCORES")
  if not res then return nil, zerr end
  local out = {}
  for i = 1, #res, 2 do
    local job = json.decode(res[i])
    if type(job) ~= "table" then job = { raw = res[i] } end
    job.died_at = tonumber(res[i + 1])
    out[#out + 1] = job
  end
  return out
end

-- The sorted sets a job waits or lies in.
local SETS = { schedule = true, retry = true, dead = true }

local function check_set(set, fn)
  if not SETS[set] then error("jobs." .. fn .. ": set must be schedule, retry or dead", 3) end
end

-- Moves the jobs of a sorted set (all, or the one whose jid is ARGV[1]) to the
-- left (last fetched) end of their queues, atomically per job and without
-- re-encoding the payload; a member that is not a job stays.
local MOVE_TO_QUEUE = [[
local moved, kept = 0, 0
for _, body in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local ok, job = pcall(cjson.decode, body)
  if ok and type(job) == 'table' and type(job.queue) == 'string' then
    if ARGV[1] == nil or job.jid == ARGV[1] then
      redis.call('ZREM', KEYS[1], body)
      redis.call('SADD', KEYS[2], job.queue)
      redis.call('LPUSH', 'queue:' .. job.queue, body)
      moved = moved + 1
    end
  else
    kept = kept + 1
  end
end
return {moved, kept}
]]

-- Removes the members of a sorted set whose jid is ARGV[1].
local DELETE_JOB = [[
local n = 0
for _, body in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local ok, job = pcall(cjson.decode, body)
  if ok and type(job) == 'table' and job.jid == ARGV[1] then
    n = n + redis.call('ZREM', KEYS[1], body)
  end
end
return n
]]

local function move_to_queue(set, jid)
  local r, err = _M.redis()
  if not r then return nil, err end
  local res, eerr = r:eval(MOVE_TO_QUEUE, { set, "queues" }, { jid })
  if not res then return nil, eerr end
  return res[1], res[2]
end

-- retry_dead() -> moved, kept (entries that are not jobs) | nil, err
function _M.retry_dead()
  return move_to_queue("dead")
end

-- retry_all(set) -> moved, kept | nil, err: every job of the schedule, retry or
-- dead set back to its queue now (payload unchanged, as Sidekiq's "retry all").
function _M.retry_all(set)
  check_set(set, "retry_all")
  return move_to_queue(set)
end

-- retry_job(set, jid) -> true | false (no such job there) | nil, err
function _M.retry_job(set, jid)
  check_set(set, "retry_job")
  if type(jid) ~= "string" then error("jobs.retry_job: jid must be a string", 2) end
  local moved, err = move_to_queue(set, jid)
  if not moved then return nil, err end
  return moved > 0
end

-- delete_job(set, jid) -> true | false (no such job there) | nil, err
function _M.delete_job(set, jid)
  check_set(set, "delete_job")
  if type(jid) ~= "string" then error("jobs.delete_job: jid must be a string", 2) end
  local r, err = _M.redis()
  if not r then return nil, err end
  local n, eerr = r:eval(DELETE_JOB, { set }, { jid })
  if not n then return nil, eerr end
  return n > 0
end

-- clear(set) -> the number of entries deleted | nil, err
function _M.clear(set)
  check_set(set, "clear")
  local r, err = _M.redis()
  if not r then return nil, err end
  local res, perr = r:pipeline(function(p)
    p:call("ZCARD", set)
    p:call("DEL", set)
  end)
  if not res then return nil, perr end
  return res[1]
end

-- entries(set[, limit]) -> up to limit (default 50) jobs of the schedule, retry
-- or dead set: dead newest first, the others soonest due first; each the
-- decoded job with `at` (its score), or { raw = body, at } for a non-job.
function _M.entries(set, limit)
  check_set(set, "entries")
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 1) then
    error("jobs.entries: limit must be a positive integer", 2)
  end
  local r, err = _M.redis()
  if not r then return nil, err end
  local res, zerr = r:call(set == "dead" and "ZREVRANGE" or "ZRANGE", set, 0, (limit or 50) - 1, "WITHSCORES")
  if not res then return nil, zerr end
  local out = {}
  for i = 1, #res, 2 do
    local job = json.decode(res[i])
    if type(job) ~= "table" then job = { raw = res[i] } end
    job.at = tonumber(res[i + 1])
    out[#out + 1] = job
  end
  return out
end

-- queues() -> { {name, size, latency}... } by name | nil, err. latency: seconds
-- the next job to be fetched has waited (0 for an empty queue).
function _M.queues()
  local r, err = _M.redis()
  if not r then return nil, err end
  local names, serr = r:call("SMEMBERS", "queues")
  if not names then return nil, serr end
  table.sort(names)
  local res, perr = r:pipeline(function(p)
    for _, q in ipairs(names) do
      p:call("LLEN", "queue:" .. q)
      p:call("LINDEX", "queue:" .. q, -1)
    end
  end)
  if not res then return nil, perr end
  local out, now = {}, _M.now()
  for i, q in ipairs(names) do
    local oldest = res[2 * i] ~= mc.null and json.decode(res[2 * i]) or nil
    local at = type(oldest) == "table" and tonumber(oldest.enqueued_at) or nil
    out[i] = { name = q, size = res[2 * i - 1], latency = at and math.max(0, now - at) or 0 }
  end
  return out
end

-- processes() -> { {identity, busy, beat, quiet}... } | nil, err: the worker
-- processes that beat (the `processes` set and each one's hash).
function _M.processes()
  local r, err = _M.redis()
  if not r then return nil, err end
  local ids, serr = r:call("SMEMBERS", "processes")
  if not ids then return nil, serr end
  table.sort(ids)
  local res, perr = r:pipeline(function(p)
    for _, id in ipairs(ids) do p:call("HMGET", id, "busy", "beat", "quiet") end
  end)
  if not res then return nil, perr end
  local out = {}
  for i, id in ipairs(ids) do
    local h = res[i]
    local function val(v) return v ~= mc.null and v or nil end
    out[i] = { identity = id, busy = tonumber(val(h[1])) or 0, beat = tonumber(val(h[2])),
      quiet = val(h[3]) == "true" }
  end
  return out
end

-- history(days) -> { {date, processed, failed}... }, oldest first, from the
-- dated counters the worker keeps (stat:processed:YYYY-MM-DD) | nil, err
function _M.history(days)
  if math.type(days) ~= "integer" or days < 1 or days > 366 then
    error("jobs.history: days must be an integer from 1 to 366", 2)
  end
  local r, err = _M.redis()
  if not r then return nil, err end
  local dates, now = {}, _M.now()
  for i = days - 1, 0, -1 do dates[#dates + 1] = os.date("!%Y-%m-%d", math.floor(now - i * 86400)) end
  local res, perr = r:pipeline(function(p)
    for _, d in ipairs(dates) do
      p:call("GET", "stat:processed:" .. d)
      p:call("GET", "stat:failed:" .. d)
    end
  end)
  if not res then return nil, perr end
  local out = {}
  for i, d in ipairs(dates) do
    local function num(v) return tonumber(v ~= mc.null and v or 0) or 0 end
    out[i] = { date = d, processed = num(res[2 * i - 1]), failed = num(res[2 * i]) }
  end
  return out
end

return _M
