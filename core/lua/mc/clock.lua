-- mc.clock: `multiconnect clock`, which enqueues the jobs of scripts/schedule.lua
-- when they are due.
--
--   return {
--     { name = "social-sync", job = "social.sync", cron = "*/10 * * * *", args = { "all" } },
--     { name = "heartbeat", job = "ops.ping", every = 30, queue = "low" },
--   }
--
-- The clock ticks on each wall-clock second (UTC). A cron entry is due at second 0
-- of a matching minute, an `every = N` entry on the seconds where floor(epoch / N)
-- changes. Any number of clock processes may run: a tick enqueues each due entry
-- once across all of them, because the enqueue happens in one Redis script only
-- if `SET mc:clock:<entry>:<tick> NX EX` succeeds. `args` may be a function of the
-- tick (epoch seconds) returning the array.
local cron = require "mc.cron"
local jobs = require "mc.jobs"
local json = require "mc.json"
local log = require "mc.log"
local host = require "mc.host"
local env = require "mc.env"
local file = require "mc.file"

local _M = {}

_M.CATCH_UP = 60     -- seconds of ticks a late wake-up still fires (a slow Redis call)
_M.LOCK_TTL = 300    -- longer than CATCH_UP plus any skew between clock processes
_M.PATH = "scripts/schedule.lua"

local KEYS = { name = true, job = true, cron = true, every = true, args = true, queue = true, retry = true }

-- ---- the schedule ----------------------------------------------------------

-- check_entry(e) -> entry | nil, err (without the entry's label)
local function check_entry(e, seen, root)
  if type(e) ~= "table" then return nil, "must be a table" end
  for k in pairs(e) do
    if not KEYS[k] then return nil, "unknown field " .. tostring(k) end
  end
  if type(e.name) ~= "string" or not e.name:match("^[%w_%-%.:]+$") then
    return nil, "name must be a string of letters, digits, _ - . :"
  end
  if seen[e.name] then return nil, "name is used twice" end
  if type(e.job) ~= "string" then return nil, "job must be a job name (jobs.NAME)" end
  if (e.cron == nil) == (e.every == nil) then return nil, "give cron or every (not both)" end
  local entry = { name = e.name, job = e.job, args = e.args, queue = e.queue, retry = e.retry }
  if e.cron ~= nil then
    local m, err = cron.parse(e.cron)
    if not m then return nil, err end
    entry.cron = m
  elseif math.type(e.every) ~= "integer" or e.every < 1 then
    return nil, "every must be a whole number of seconds >= 1"
  end
  entry.every = e.every
  if type(e.args) ~= "function" then
    -- jobs.payload owns the rules for names, args, queue and retry
    local ok, err = pcall(jobs.payload, e.job, e.args, { queue = e.queue, retry = e.retry })
    if not ok then return nil, (tostring(err):gsub("^[^:]*:%d+: ", ""):gsub("^jobs: ", "")) end
  end
  local found, err = jobs.exists(e.job, root)
  if not found then return nil, err end
  return entry
end

-- validate(list[, root]) -> entries | nil, err (the error names the entry). Job
-- modules are looked for under root/scripts/jobs (root: MC_ROOT).
function _M.validate(list, root)
  if type(list) ~= "table" then return nil, "must return a list of entries" end
  local entries, seen = {}, {}
  for i = 1, #list do
    local e = list[i]
    local entry, err = check_entry(e, seen, root)
    if not entry then
      local label = type(e) == "table" and type(e.name) == "string" and string.format(" (%s)", e.name) or ""
      return nil, string.format("entry %d%s: %s", i, label, err)
    end
    seen[entry.name] = true
    entries[i] = entry
  end
  for k in pairs(list) do
    if math.type(k) ~= "integer" or k < 1 or k > #list then
      return nil, "must be a list of entries, without other keys or holes"
    end
  end
  return entries
end

-- load(path) -> entries | nil, err
function _M.load(path)
  local chunk, err = loadfile(path, "t")
  if not chunk then return nil, err end
  local ok, list = pcall(chunk)
  if not ok then return nil, tostring(list) end
  local entries, verr = _M.validate(list)
  if not entries then return nil, _M.PATH .. ": " .. verr end
  return entries
end

-- ---- ticks -----------------------------------------------------------------

-- due(entry, t) -> boolean, for a whole second t
function _M.due(entry, t)
  if entry.every then return t % entry.every == 0 end
  return t % 60 == 0 and entry.cron:matches(t)
end

-- Takes the tick's lock and enqueues in one step, so that a crash or a lost
-- connection can not leave the lock taken and the job not enqueued.
local FIRE = [[
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('LPUSH', KEYS[3], ARGV[4])
return 1
]]

-- fire(r, entry, t, identity) -> jid | false (another clock did) | nil, err
function _M.fire(r, entry, t, identity)
  local args = entry.args
  if type(args) == "function" then
    local ok, res = pcall(args, t)
    if not ok then return nil, "args: " .. tostring(res) end
    args = res
  end
  local ok, job = pcall(jobs.payload, entry.job, args, { queue = entry.queue, retry = entry.retry })
  if not ok then return nil, tostring(job) end
  job.enqueued_at = jobs.now()
  local body, jerr = json.encode(job)
  if not body then return nil, "args JSON cannot hold: " .. jerr end
  local lock = "mc:clock:" .. entry.name .. ":" .. t
  local res, err = r:eval(FIRE, { lock, "queues", "queue:" .. job.queue },
    { identity, _M.LOCK_TTL, job.queue, body })
  if not res then return nil, err end
  return res == 1 and job.jid
end

function _M.tick(r, entries, t, identity)
  for _, entry in ipairs(entries) do
    if _M.due(entry, t) then
      local jid, err = _M.fire(r, entry, t, identity)
      if jid then
        log.info("clock enqueued", { entry = entry.name, job = entry.job, jid = jid, tick = t })
      elseif jid == nil then
        log.error("clock could not enqueue", { entry = entry.name, job = entry.job, tick = t, error = err })
      end
    end
  end
end

-- ---- the process -----------------------------------------------------------

-- A schedule that changed on disk (acted on once it has stayed the same for a
-- tick, so a half-written file is not loaded) or on SIGHUP replaces the running
-- one only if it loads; otherwise the old one keeps running and the error is
-- logged once.
local function reloader(path, entries)
  local source = file.read(path)
  local pending = source
  return function(forced)
    local now = file.read(path)
    local settled = now == pending
    pending = now
    if not forced and (now == source or not settled) then return entries end
    source = now
    local new, err = _M.load(path)
    if not new then
      log.error("schedule reload failed: previous schedule keeps running", { error = err })
      return entries
    end
    entries = new
    log.info("schedule reloaded", { entries = #entries })
    return entries
  end
end

local function usage()
  io.stderr:write("usage: multiconnect clock [--check]\n")
  return 2
end

-- `multiconnect clock [--check]`
function _M.serve(args)
  args = args or {}
  if #args > 1 or (args[1] and args[1] ~= "--check") then return usage() end
  local path = host.root .. "/" .. _M.PATH
  local entries, err = _M.load(path)
  if not entries then
    io.stderr:write("multiconnect clock: ", err, "\n")
    return 1
  end
  if args[1] == "--check" then
    print(string.format("%s: %d entries", _M.PATH, #entries))
    return 0
  end
  local r, rerr = jobs.redis()
  if not r then
    io.stderr:write("multiconnect clock: ", rerr, "\n")
    return 1
  end
  host.block_signals()
  local identity = (os.getenv("DYNO") or host.hostname()) .. ":" .. host.pid()
  local reload = reloader(path, entries)
  local watch = env.bool("MC_RELOAD", true)
  log.info("clock starting", { entries = #entries, identity = identity })
  local last = math.floor(host.time())
  while true do
    local sig = host.wait_signal(last + 1 - host.time())
    if sig == "TERM" or sig == "INT" then
      log.info("clock stopping", { signal = sig })
      return 0
    end
    if sig == "HUP" then entries = reload(true) end
    local now = math.floor(host.time())
    if now > last then
      if watch then entries = reload(false) end
      for t = math.max(last + 1, now - _M.CATCH_UP), now do _M.tick(r, entries, t, identity) end
      last = now
    end
  end
end

return _M
