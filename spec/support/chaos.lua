-- support.chaos: Jepsen-style accounting of jobs for the specs under spec/chaos/.
-- Jobs are enqueued with ids and recorded ("what goes in"); faults are injected;
-- then account() waits for every id to come out -- done (the job's idempotent
-- step, SADD chaos:done) or visibly dead -- and reports what did not.
--   local chaos = require "support.chaos"
--   local enqueued = chaos.enqueue(400)
--   local w = chaos.worker(url)
--   ... faults ...
--   local report = chaos.account(r, enqueued, 60)  -- lost, unexpected, twice, ...
local workers = require "support.worker"
local proc = require "support.process"
local json = require "mc.json"
local jobs = require "mc.jobs"

local _M = {}

-- chaos.step{id, seconds}: counts its run, works a while (the window a fault
-- lands in), then records that id as done. chaos.poison kills the process
-- that runs it, every time.
_M.FILES = {
  ["scripts/jobs/chaos/step.lua"] = [[
    local conns = require "mc.conns"
    local _M = {}
    -- a lost connection is made again by the next call: one more try
    local function call(...)
      local r = assert(conns.redis())
      local v, err = r:call(...)
      if v == nil and err then v = assert(r:call(...)) end
      return v
    end
    function _M.perform(args)
      call("HINCRBY", "chaos:runs", args[1], 1)
      os.execute("sleep " .. args[2])
      call("SADD", "chaos:done", args[1])
      return true
    end
    return _M
  ]],
  ["scripts/jobs/chaos/poison.lua"] = [[
    local _M = {}
    function _M.perform(args)
      os.execute("kill -9 " .. require("mc.host").pid())
      os.execute("sleep 10") -- the signal lands meanwhile
      return true
    end
    return _M
  ]],
}

-- worker(redis_url, env?, may_end?) -> a `multiconnect worker` that runs the chaos jobs,
-- with short heartbeat, poll and stray timings so that recovery fits a spec
function _M.worker(url, env, may_end)
  local e = { REDIS_URL = url, WORKER_CONCURRENCY = "4", WORKER_HEARTBEAT_TTL = "2",
    WORKER_POLL_INTERVAL = "0.2", WORKER_STRAY_GRACE = "1", LOG_LEVEL = "warn" }
  for k, v in pairs(env or {}) do e[k] = v end
  return workers.start({ files = _M.FILES, env = e, may_end = may_end })
end

-- enqueue(n[, seconds]) -> the set of ids enqueued (through mc.jobs, which the
-- spec has pointed at its database with jobs.use); each job works 0.1-0.4 s
function _M.enqueue(n, prefix)
  local enqueued = {}
  for i = 1, n do
    local id = (prefix or "job-") .. i
    assert(jobs.enqueue("chaos.step", { id, string.format("%.2f", 0.1 + (i % 7) * 0.05) }))
    enqueued[id] = true
  end
  return enqueued
end

local function dead_ids(r)
  local out = {}
  for _, payload in ipairs(assert(r:call("ZRANGE", "dead", 0, -1))) do
    local job = json.decode(payload)
    if job and job.args then out[tostring(job.args[1])] = true end
  end
  return out
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- account(r, enqueued, seconds) -> {drained, done, dead, lost = {ids},
-- unexpected = {ids}, twice}: waits (bounded) until every enqueued id is done
-- or dead, then compares what came out with what went in.
function _M.account(r, enqueued, seconds)
  local done, dead = {}, {}
  local drained = proc.wait_for(function()
    done, dead = {}, dead_ids(r)
    for _, id in ipairs(assert(r:call("SMEMBERS", "chaos:done"))) do done[id] = true end
    for id in pairs(enqueued) do
      if not done[id] and not dead[id] then return false end
    end
    return true
  end, seconds)
  local report = { drained = drained == true, done = count(done), dead = count(dead), lost = {},
    unexpected = {}, twice = 0 }
  for id in pairs(enqueued) do
    if not done[id] and not dead[id] then report.lost[#report.lost + 1] = id end
  end
  for id in pairs(done) do
    if not enqueued[id] then report.unexpected[#report.unexpected + 1] = id end
  end
  local runs = assert(r:call("HGETALL", "chaos:runs")) -- id, count, id, count, ...
  for i = 2, #runs, 2 do
    if tonumber(runs[i]) > 1 then report.twice = report.twice + 1 end
  end
  return report
end

-- summary(what, report) -> one line for the spec's output
function _M.summary(what, report)
  return string.format("chaos: %s: done %d, dead %d, ran more than once %d, lost %d, unexpected %d",
    what, report.done, report.dead, report.twice, #report.lost, #report.unexpected)
end

return _M
