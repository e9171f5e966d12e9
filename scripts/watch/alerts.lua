-- watch.alerts: the mails that follow an org into `degraded` or `failed`: one
-- to the org's admin (through the tenant's email hook: what to do, or that the
-- ISV knows) and one to the operator (OPS_EMAIL: what broke and the command
-- that fixes it). Each is its own alerts.mail job, queued once per episode by
-- whoever made the move, so a mail that fails is retried alone and one that
-- went out is not sent again.
--   alerts.queue(org_id, kind)  -> true | nil, err   kind: "degraded" | "failed"
--   alerts.send(conn, org_id, kind, to) -> what happened | nil, err, retryable
local jobs = require "mc.jobs"
local orgs = require "onboarding.orgs"
local notify = require "onboarding.notify"
local steps = require "onboarding.steps"
local record = require "watch.record"

local _M = {}

local JOB = "alerts.mail"
_M.RECIPIENTS = { "admin", "operator" }

function _M.queue(org_id, kind)
  for _, to in ipairs(_M.RECIPIENTS) do
    local jid, err = jobs.enqueue(JOB, { org_id, kind, to })
    if not jid then return nil, "queueing the " .. kind .. " alert: " .. err end
  end
  return true
end

-- What the operator is asked to do, for each kind of problem (one line).
local ACTION = {
  authorization = "The org's admin has been mailed a fresh Heroku Connect authorize link.",
  paused = "Resume the connection (the Heroku Connect dashboard, or POST /api/v3/connections/<id>/actions/resume).",
  connection = "Look at the connection in the Heroku Connect dashboard (POST .../actions/restart recovers it).",
  mapping = "Look at the mapping's errors in the Heroku Connect dashboard; once fixed, import it again: "
    .. "multiconnect console -e 'org(\"%s\"):reimport_mapping()'.",
  stale = "Look at the connection in the Heroku Connect dashboard: its polling has stopped.",
}

local function has(problems, kind)
  for _, p in ipairs(problems) do if p.kind == kind then return true end end
  return false
end

local function texts(problems)
  local out = {}
  for _, p in ipairs(problems) do out[#out + 1] = "- " .. tostring(p.text) end
  return table.concat(out, "\n")
end

local function actions(org, problems)
  local out, seen = {}, {}
  for _, p in ipairs(problems) do
    if ACTION[p.kind] and not seen[p.kind] then
      seen[p.kind] = true
      out[#out + 1] = ACTION[p.kind]:format(org.org_id)
    end
  end
  return table.concat(out, " ")
end

local function degraded_admin(org, problems)
  if has(problems, "authorization") then
    local url, err, retry = steps.authorize_url(org)
    if not url then return nil, "a fresh authorize link: " .. err, retry end
    return notify.send(org, "reauthorize", { url = url })
  end
  return notify.send(org, "degraded", { reason = texts(problems) })
end

local function failed_vars(org)
  local step = org.failed_step ~= mc.null and org.failed_step or "received"
  local reason = org.last_error ~= mc.null and org.last_error or "(no error recorded)"
  return step, reason
end

local SENDERS = {
  degraded = {
    admin = function(org, problems) return degraded_admin(org, problems) end,
    operator = function(org, problems)
      return notify.operator(org, "operator_degraded", { reason = texts(problems), action = actions(org, problems) })
    end,
  },
  failed = {
    admin = function(org)
      local step, reason = failed_vars(org)
      return notify.send(org, "failed", { step = step, reason = reason })
    end,
    operator = function(org)
      local step, reason = failed_vars(org)
      return notify.operator(org, "operator_failed", { step = step, reason = reason,
        command = "multiconnect console -e 'org(\"" .. org.org_id .. "\"):resume()'" })
    end,
  },
}

-- send(...) -> message id | "suppressed" | "no OPS_EMAIL" | "moved on" (the org
-- left that state before the mail went) | nil, err, retryable
function _M.send(conn, org_id, kind, to)
  local sender = SENDERS[kind] and SENDERS[kind][to]
  if not sender then error("alerts.send: unknown alert " .. tostring(kind) .. " to " .. tostring(to), 2) end
  local org, err = orgs.get(conn, org_id)
  if org == nil then return nil, err, true end
  if not org or org.state ~= kind then return "moved on" end
  org.tenant = orgs.public(org)
  local problems = {}
  if kind == "degraded" then
    local seen, rerr = record.get(conn, org_id)
    if seen == nil then return nil, rerr, true end
    problems = seen and seen.problems or {}
  end
  return sender(org, problems)
end

return _M
