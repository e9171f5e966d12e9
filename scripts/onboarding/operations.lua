-- onboarding.operations: what an operator (or the package) can ask of an org's
-- onboarding, shared by the HTTP API and the console. Each takes the connection
-- and the org id, runs in one transaction with the row locked, records who asked
-- in onboarding_events, and enqueues the next step:
--   resume(conn, id, by)            a failed org goes back to the step that failed
--   retry_step(conn, id, by)        a waiting or retrying org runs its step now
--   reimport_mapping(conn, id, by)  an active org imports its mapping again
-- -> the org's row | nil, err (err "no such org", or why it does not apply).
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local workflow = require "onboarding.workflow"

local _M = {}

local must = orgs.must

-- change(conn, id, check, by) runs check(cur) -> fields, to | nil, why
local function change(conn, id, by, check)
  local why
  local org = conn:transaction(function()
    local cur = must(orgs.get(conn, id, "update"))
    if not cur then why = "no such org"; return false end
    local fields, to = check(cur)
    if not fields then why = to; return false end
    local moved = to ~= cur.state
    local row = must(orgs.update(conn, id, fields, { due = states.PERSON[to] and false or 0, new_state = moved }))
    assert(orgs.event(conn, id, cur.state, to, "request", type(by) == "table" and by or { by = by }))
    return row
  end)
  if not org then return nil, why end
  if not states.PERSON[org.state] and not states.FINAL[org.state] then workflow.enqueue(id) end
  return org
end

function _M.resume(conn, id, by)
  return change(conn, id, by, function(cur)
    if cur.state ~= "failed" then return nil, "org is " .. cur.state .. ", not failed: nothing to resume" end
    local step = cur.failed_step ~= mc.null and cur.failed_step or "received"
    return { state = step, attempts = 0, last_error = mc.null, failed_step = mc.null, progress = {} }, step
  end)
end

function _M.retry_step(conn, id, by)
  return change(conn, id, by, function(cur)
    if cur.state == "failed" then return nil, "org is failed: resume it instead" end
    if states.FINAL[cur.state] or states.PERSON[cur.state] then
      return nil, "org is " .. cur.state .. ": no step to retry"
    end
    return { attempts = 0 }, cur.state
  end)
end

function _M.reimport_mapping(conn, id, by)
  return change(conn, id, by, function(cur)
    if cur.state ~= "active" and cur.state ~= "mappings_imported" then
      return nil, "org is " .. cur.state .. ": its mapping is imported when onboarding gets there"
    end
    return { state = "connect_authorized", attempts = 0 }, "connect_authorized"
  end)
end

-- offboard(conn, id, details[, lock_timeout_ms]) -> row | nil, err ("no such org",
-- "busy" when lock_timeout_ms passed before the row's lock came free). The
-- add-on is deleted by the onboarding.offboard job this enqueues.
function _M.offboard(conn, id, details, lock_timeout_ms)
  local busy = false
  local org, err = conn:transaction(function()
    if lock_timeout_ms then must(conn:query("SELECT set_config('lock_timeout', $1, true)", lock_timeout_ms .. "ms")) end
    local cur, gerr, sqlstate = orgs.get(conn, id, "update")
    if cur == nil and sqlstate == "55P03" then busy = true; return false end
    must(cur, gerr)
    if not cur or cur.state == "offboarded" then return cur end
    local row = must(orgs.update(conn, id, { state = "offboarded", offboarded_at = os.date("!%Y-%m-%dT%H:%M:%SZ") },
      { due = false, new_state = true }))
    assert(orgs.event(conn, id, cur.state, "offboarded", "request", details))
    return row
  end)
  if busy then return nil, "busy" end
  if org == nil then error(err) end
  if not org then return nil, "no such org" end
  require("mc.jobs").enqueue("onboarding.offboard", { id })
  return org
end

return _M
