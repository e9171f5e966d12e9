-- onboarding.operations: what an operator (or the package) can ask of an org's
-- onboarding, shared by the HTTP API and the console. Each takes the connection
-- and the org id, moves the org through orgs.transition (which records who
-- asked in onboarding_events) and enqueues the next step:
--   resume(conn, id, by)            a failed org goes back to the step that failed
--   retry_step(conn, id, by)        a waiting or retrying org runs its step now
--   reimport_mapping(conn, id, by[, mover])  an active (or degraded) org imports its mapping again
--   resend_mail(conn, id, by)       an org waiting on its admin gets that mail again
--   offboard(conn, id, details[, lock_timeout_ms, mover])  the org is offboarded
-- -> the org's row | false, why (no such org, or why it does not apply) | nil, err
-- (a database failure).
local jobs = require "mc.jobs"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local workflow = require "onboarding.workflow"

local _M = {}

local function details(by) return type(by) == "table" and by or { by = by } end

local function moved(row, why)
  if not row then return row, why end
  workflow.announce(row, row.from_state, row.state)
  if not states.PERSON[row.state] and not states.FINAL[row.state] then workflow.enqueue(row.org_id) end
  return row
end

function _M.resume(conn, id, by)
  local cur, err = orgs.get(conn, id)
  if not cur then return cur, cur == false and "no such org" or err end
  if cur.state ~= "failed" then return false, "org is " .. cur.state .. ", not failed: nothing to resume" end
  local step = cur.failed_step ~= mc.null and cur.failed_step or "received"
  return moved(orgs.transition(conn, id, step, "operator", { from = "failed", details = details(by),
    fields = { attempts = 0, last_error = mc.null, failed_step = mc.null, progress = {} } }))
end

-- Not a move: the step of the org's state is made due now.
function _M.retry_step(conn, id, by)
  local cur, err = orgs.get(conn, id)
  if not cur then return cur, cur == false and "no such org" or err end
  if cur.state == "failed" then return false, "org is failed: resume it instead" end
  if states.FINAL[cur.state] or states.PERSON[cur.state] then
    return false, "org is " .. cur.state .. ": no step to retry"
  end
  local row
  local ok, terr = conn:transaction(function()
    local uerr
    row, uerr = orgs.update(conn, id, { attempts = 0 }, { due = 0, where_state = cur.state })
    if not row then return row == nil and nil or true, uerr end
    return orgs.note(conn, row, "request", details(by))
  end)
  if not ok then return nil, terr end
  if not row then return false, "org moved on from " .. cur.state end
  workflow.enqueue(id)
  return row
end

function _M.reimport_mapping(conn, id, by, mover)
  local row, why = orgs.transition(conn, id, "connect_authorized", mover or "operator",
    { from = { "active", "degraded", "mappings_imported" }, fields = { attempts = 0 }, details = details(by) })
  if row == false and why ~= "no such org" then
    why = why .. ": its mapping is imported when onboarding gets there"
  end
  return moved(row, why)
end

-- The state whose step sends the mail an org in a waiting state is waiting on.
local MAIL_STEP = { awaiting_app_oauth = "authorize_url_ready", awaiting_connect_oauth = "subscriber_updated" }

-- The org goes back to the step that mailed its admin, which mails again (a
-- fresh sign-in link, or Connect's authorize URL) and waits again. The links
-- of the earlier mail keep working.
function _M.resend_mail(conn, id, by)
  local cur, err = orgs.get(conn, id)
  if not cur then return cur, cur == false and "no such org" or err end
  local step = MAIL_STEP[cur.state]
  if not step then return false, "org is " .. cur.state .. ": it is not waiting on its admin's mail" end
  return moved(orgs.transition(conn, id, step, "operator", { from = cur.state, details = details(by),
    fields = { attempts = 0 } }))
end

-- offboard(...) -> row | false, why | nil, err, "busy" when lock_timeout_ms
-- passed before the row's lock came free. An org already offboarded comes back
-- as it is. The add-on is deleted by the onboarding.offboard job this enqueues.
function _M.offboard(conn, id, by, lock_timeout_ms, mover)
  local row, why = conn:transaction(function()
    if lock_timeout_ms then
      local ok, err = conn:query("SELECT set_config('lock_timeout', $1, true)", lock_timeout_ms .. "ms")
      if not ok then return nil, err end
    end
    local cur, err, sqlstate = orgs.get(conn, id, "update")
    if cur == nil then return nil, sqlstate == "55P03" and "busy" or err end
    if cur and cur.state == "offboarded" then return cur end
    return orgs.transition(conn, id, "offboarded", mover or "package",
      { fields = { offboarded_at = os.date("!%Y-%m-%dT%H:%M:%SZ") }, details = details(by) })
  end)
  if not row then return row, why end
  if row.from_state then workflow.announce(row, row.from_state, row.state) end
  jobs.enqueue("onboarding.offboard", { id }) -- again for an offboarded org: deleting is idempotent
  return row
end

return _M
