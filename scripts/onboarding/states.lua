-- onboarding.states: the onboarding state machine (docs/design.md "Onboarding
-- workflow"). Each state names the step that runs while an org is in it
-- (onboarding/steps.lua). MOVES below is the whole list of moves between
-- states and who may make each; orgs.transition refuses any other, so this
-- file is where a new state or a new way out of one is declared.
local _M = {}

_M.ORDER = {
  "received", "addon_provisioned", "app_linked", "connection_configured", "authorize_url_ready",
  "awaiting_app_oauth", "app_authorized", "subscriber_updated", "awaiting_connect_oauth",
  "connect_authorized", "mappings_imported", "active",
}

-- States left by a person's action (a browser arriving at one of our URLs), not a step.
_M.PERSON = { awaiting_app_oauth = true, awaiting_connect_oauth = true }

-- States no job advances.
_M.FINAL = { active = true, degraded = true, failed = true, offboarded = true }

-- After onboarding: a tenant whose sync the health watch (jobs/health/) found
-- broken, stale or unauthorized. It keeps everything an active tenant has.
_M.AFTER = { "degraded" }

_M.INDEX = {}
for i, s in ipairs(_M.ORDER) do _M.INDEX[s] = i end

-- Every state, in the order the dashboard lists them: the onboarding's, then
-- those after it, then failed and offboarded.
_M.ALL = {}
for _, s in ipairs(_M.ORDER) do _M.ALL[#_M.ALL + 1] = s end
for _, s in ipairs(_M.AFTER) do _M.ALL[#_M.ALL + 1] = s end
_M.ALL[#_M.ALL + 1] = "failed"
_M.ALL[#_M.ALL + 1] = "offboarded"
local KNOWN = {}
for _, s in ipairs(_M.ALL) do KNOWN[s] = true end

-- Who moves an org:
--   step      a job: onboarding.advance, running the step of the org's state, or
--             health.check, watching an onboarded org's sync
--   person    the org's admin, in a browser, at one of our URLs (oauth.lua)
--   operator  a person running the service (HTTP API, console)
--   package   the managed package's install and uninstall callbacks
_M.MOVERS = { step = true, person = true, operator = true, package = true }

-- Every allowed move: { from, to, by... }. A list, not a formula, so that a
-- reader sees each way an org can travel.
_M.MOVES = {
  -- the steps, each moving its org one state on
  { "received", "addon_provisioned", "step" },
  { "addon_provisioned", "app_linked", "step" },
  { "app_linked", "connection_configured", "step" },
  { "connection_configured", "authorize_url_ready", "step" },
  { "authorize_url_ready", "awaiting_app_oauth", "step" },
  { "app_authorized", "subscriber_updated", "step" },
  { "app_authorized", "authorize_url_ready", "step" }, -- the org's session is dead: sign in again
  { "subscriber_updated", "awaiting_connect_oauth", "step" },
  { "connect_authorized", "mappings_imported", "step" },
  { "mappings_imported", "active", "step" },
  -- the admin's browser; a link works from the moment its mail leaves, before
  -- the step that sent it has recorded the wait
  { "authorize_url_ready", "app_authorized", "person" },
  { "awaiting_app_oauth", "app_authorized", "person" },
  { "authorize_url_ready", "failed", "person" }, -- signed in to the wrong org
  { "awaiting_app_oauth", "failed", "person" },
  { "subscriber_updated", "connect_authorized", "person" },
  { "awaiting_connect_oauth", "connect_authorized", "person" },
  -- the health watch: a sync found broken, and healed
  { "active", "degraded", "step" },
  { "degraded", "active", "step" },
  -- the mapping imported again: an operator's request, or a package upgrade
  { "active", "connect_authorized", "operator", "package" },
  { "degraded", "connect_authorized", "operator", "package" },
  { "mappings_imported", "connect_authorized", "operator", "package" },
  -- an operator has the admin's mail sent again: back to the step that sends it
  { "awaiting_app_oauth", "authorize_url_ready", "operator" },
  { "awaiting_connect_oauth", "subscriber_updated", "operator" },
  -- a reinstall after an uninstall starts over
  { "offboarded", "received", "package" },
}

-- Generated families, each a rule rather than a dozen lines:
for _, s in ipairs(_M.ORDER) do
  if not _M.PERSON[s] and not _M.FINAL[s] then
    _M.MOVES[#_M.MOVES + 1] = { s, "failed", "step" } -- a step failed for good
  end
  if s ~= "active" then
    _M.MOVES[#_M.MOVES + 1] = { "failed", s, "operator" } -- resumed at the failed step
  end
end
for _, s in ipairs(_M.ALL) do -- every state but offboarded itself
  if s ~= "offboarded" then
    _M.MOVES[#_M.MOVES + 1] = { s, "offboarded", "package", "operator" } -- uninstall, or the operator's offboard
  end
end

-- ALLOWED[from][to][by] = true
_M.ALLOWED = {}
for _, m in ipairs(_M.MOVES) do
  local from, to = m[1], m[2]
  _M.ALLOWED[from] = _M.ALLOWED[from] or {}
  _M.ALLOWED[from][to] = _M.ALLOWED[from][to] or {}
  for i = 3, #m do
    assert(_M.MOVERS[m[i]], "states: unknown mover " .. tostring(m[i]))
    _M.ALLOWED[from][to][m[i]] = true
  end
end

function _M.known(s)
  return KNOWN[s] == true
end

-- Onboarded: the tenant has its schema and its sync (healthy or not).
_M.ONBOARDED = { active = true, degraded = true }

-- allowed(from, to, by) -> true | nil, why
function _M.allowed(from, to, by)
  if not _M.MOVERS[by] then error("states.allowed: unknown mover " .. tostring(by), 2) end
  if not _M.known(to) then error("states.allowed: unknown state " .. tostring(to), 2) end
  local tos = _M.ALLOWED[from]
  if tos and tos[to] and tos[to][by] then return true end
  return nil, string.format("no move from %s to %s by %s", tostring(from), to, by)
end

-- The froms from which `by` may move an org to `to` (for a guarded UPDATE).
function _M.froms(to, by)
  local list = {}
  for from, tos in pairs(_M.ALLOWED) do
    if tos[to] and tos[to][by] then list[#list + 1] = from end
  end
  table.sort(list)
  return list
end

function _M.next(s) return _M.ORDER[(_M.INDEX[s] or #_M.ORDER) + 1] end

-- What happens next, in words, for GET /organizations/:id and the console.
local NEXT = {
  received = "provisioning the Heroku Connect add-on",
  addon_provisioned = "linking the add-on to our Heroku user",
  app_linked = "configuring the connection's schema and database",
  connection_configured = "asking Heroku Connect for the Salesforce authorize URL",
  authorize_url_ready = "mailing the org's admin a sign-in link",
  awaiting_app_oauth = "waiting for the org's admin to sign in to Salesforce (link in the first mail)",
  app_authorized = "writing the connection details into the org",
  subscriber_updated = "mailing the org's admin the Heroku Connect authorize link",
  awaiting_connect_oauth = "waiting for the org's admin to authorize Heroku Connect (link in the second mail)",
  connect_authorized = "importing the tenant's mapping",
  mappings_imported = "waiting for Heroku Connect to sync the mapped tables",
  active = "nothing: the org is connected (its sync is watched)",
  degraded = "the org's sync needs attention (see the last health check); it returns to active once healed",
  failed = "an operator fixes the cause, then resumes (POST /organizations/:org_id/resume, or the console)",
  offboarded = "nothing: the package was uninstalled (the connection paused, the add-on removed, "
    .. "the schema archived for ARCHIVE_DAYS)",
}

function _M.next_action(s) return NEXT[s] or "unknown" end

return _M
