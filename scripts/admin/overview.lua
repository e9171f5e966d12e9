-- admin.overview: the dashboard's first page -- tenants per state, the job
-- counters, and two small charts (onboardings per hour over a day, jobs
-- processed per day over a week) -- and the same figures as JSON, which the
-- page's script fetches every few seconds to refresh itself.
local jobs = require "mc.jobs"
local log = require "mc.log"
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local render = require "admin.render"

local _M = {}

_M.HOURS = 24
_M.DAYS = 7
local CHART_W, CHART_H = 240, 60 -- the SVG's viewBox; the CSS scales it

-- figures() -> everything the page shows, as plain data | nil, err
function _M.figures()
  local conn, err = db.conn()
  if not conn then return nil, err end
  local counts, cerr = orgs.counts(conn)
  if not counts then return nil, cerr end
  local activity, aerr = orgs.activity(conn, _M.HOURS)
  if not activity then return nil, aerr end
  local stats, serr = jobs.stats()
  if not stats then return nil, serr end
  local queues, qerr = jobs.queues()
  if not queues then return nil, qerr end
  local processes, perr = jobs.processes()
  if not processes then return nil, perr end
  local history, herr = jobs.history(_M.DAYS)
  if not history then return nil, herr end
  local enqueued, latency, busy = 0, 0, 0
  for _, q in ipairs(queues) do enqueued, latency = enqueued + q.size, math.max(latency, q.latency) end
  for _, p in ipairs(processes) do busy = busy + p.busy end
  local started, active, processed = {}, {}, {}
  for i, a in ipairs(activity) do started[i], active[i] = a.started, a.active end
  for i, d in ipairs(history) do processed[i] = d.processed end
  return {
    states = counts,
    jobs = { processed = stats.processed, failed = stats.failed, enqueued = enqueued, scheduled = stats.scheduled,
      retries = stats.retries, dead = stats.dead, busy = busy, latency = math.floor(latency) },
    started = started, active = active, processed = processed,
  }
end

-- bars(values) -> the rectangles of a bar chart of values in the viewBox
function _M.bars(values)
  local top = 1
  for _, v in ipairs(values) do top = math.max(top, v) end
  local w = CHART_W / #values
  local out = {}
  for i, v in ipairs(values) do
    local h = v == 0 and 0 or math.max(1, v / top * (CHART_H - 2))
    out[i] = { x = string.format("%.2f", (i - 1) * w + 0.5), w = string.format("%.2f", w - 1),
      y = string.format("%.2f", CHART_H - h), h = string.format("%.2f", h), v = v }
  end
  return out
end

local function all_states(counts)
  local list = {}
  for _, s in ipairs(states.ALL) do list[#list + 1] = { name = s, n = counts[s] or 0 } end
  return list
end

local function sum(list)
  local n = 0
  for _, v in ipairs(list) do n = n + v end
  return n
end

function _M.show(_, ctx)
  local f, err = _M.figures()
  if not f then
    log.error("admin overview: a backing service is unavailable", { err = err })
    return render.message(503, "Unavailable", "Postgres or Redis cannot be reached right now. Try again shortly.")
  end
  return render.page(200, "overview.html", { title = "Overview", nav = "overview", csrf = ctx.csrf, flash = ctx.flash,
    states = all_states(f.states), jobs = f.jobs, chart_w = CHART_W, chart_h = CHART_H,
    active_bars = _M.bars(f.active), started_total = sum(f.started), active_total = sum(f.active),
    processed_bars = _M.bars(f.processed), processed_total = sum(f.processed), hours = _M.HOURS, days = _M.DAYS })
end

function _M.json()
  local f, err = _M.figures()
  if not f then
    log.error("admin overview: a backing service is unavailable", { err = err })
    return 503, { error = "Postgres or Redis is unavailable" }
  end
  f.at = math.floor(jobs.now())
  return 200, f, { ["Cache-Control"] = "no-store", ["Content-Type"] = "application/json" }
end

return _M
