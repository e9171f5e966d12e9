-- admin.jobs: the dashboard's jobs page (queues and their latency, worker
-- processes, counters, the retry and dead sets with each job's error) and its
-- actions: retry or delete one job, or all of a set. Everything goes through
-- mc.jobs, on the same Redis layout Sidekiq's Web UI reads.
local jobs = require "mc.jobs"
local json = require "mc.json"
local log = require "mc.log"
local session = require "admin.session"
local render = require "admin.render"

local _M = {}

_M.SHOWN = 100 -- jobs listed per set
local SETS = { retry = "Retries", dead = "Dead" }

local function unavailable(err)
  log.error("admin: redis unavailable", { err = err })
  return render.message(503, "Unavailable", "Redis cannot be reached right now. Try again shortly.")
end

-- A set's jobs as the page shows them.
local function listed(set)
  local entries, err = jobs.entries(set, _M.SHOWN)
  if not entries then return nil, err end
  local out = {}
  for i, j in ipairs(entries) do
    out[i] = { jid = j.jid or "", class = j.class or "(not a job)", queue = j.queue or "",
      args = j.args and json.encode(j.args) or (j.raw or ""), error = j.error_message or "",
      retry_count = j.retry_count or 0, at = os.date("!%Y-%m-%d %H:%M:%S", math.floor(j.at)) }
  end
  return out
end

function _M.show(_, ctx)
  local stats, err = jobs.stats()
  if not stats then return unavailable(err) end
  local queues, qerr = jobs.queues()
  if not queues then return unavailable(qerr) end
  local processes, perr = jobs.processes()
  if not processes then return unavailable(perr) end
  local retry, rerr = listed("retry")
  if not retry then return unavailable(rerr) end
  local dead, derr = listed("dead")
  if not dead then return unavailable(derr) end
  local busy = 0
  for _, p in ipairs(processes) do
    busy = busy + p.busy
    p.beat_age = p.beat and math.max(0, jobs.now() - p.beat) or false
  end
  return render.page(200, "jobs.html", { title = "Jobs", nav = "jobs", csrf = ctx.csrf, flash = ctx.flash,
    stats = stats, queues = queues, processes = processes, busy = busy,
    sets = { { name = "retry", title = SETS.retry, jobs = retry, total = stats.retries },
      { name = "dead", title = SETS.dead, jobs = dead, total = stats.dead } } })
end

-- The action on a set -> the flash message
local function run(set, action, jid)
  local what = SETS[set]
  if action == "retry" and jid then
    local ok, err = jobs.retry_job(set, jid)
    if ok == nil then return nil, err end
    return ok and ("Job " .. jid .. " is queued again.") or ("Job " .. jid .. " is no longer in " .. what .. ".")
  elseif action == "delete" and jid then
    local ok, err = jobs.delete_job(set, jid)
    if ok == nil then return nil, err end
    return ok and ("Job " .. jid .. " is deleted.") or ("Job " .. jid .. " is no longer in " .. what .. ".")
  elseif action == "retry" then
    local moved, err = jobs.retry_all(set)
    if not moved then return nil, err end
    return moved .. " job(s) of " .. what .. " queued again."
  end
  local n, err = jobs.clear(set)
  if not n then return nil, err end
  return n .. " job(s) of " .. what .. " deleted."
end

function _M.act(req)
  local set, action = req.params.set, req.params.action
  if not SETS[set] or (action ~= "retry" and action ~= "delete") then
    return render.message(404, "No such action", "That jobs action does not exist.")
  end
  local form = req.form()
  local jid = type(form.jid) == "string" and form.jid ~= "" and form.jid or nil
  if not jid and form.all ~= "yes" then
    return render.message(400, "Which job?", "Name a job (jid), or ask for all of them (all=yes).")
  end
  local said, err = run(set, action, jid)
  if not said then
    log.error("admin jobs action failed", { set = set, action = action, err = err })
    said = "That did not work: Redis cannot be reached. Try again shortly."
  end
  log.info("admin jobs action", { set = set, action = action, jid = jid or "all", ip = req.ip })
  return render.redirect("/admin/jobs", session.flash(said))
end

return _M
