-- onboarding.states: the onboarding state machine (design.md "Onboarding
-- workflow"). Each state names the step that runs while an org is in it
-- (onboarding/steps.lua); a step moves the org to the next state, or waits.
local _M = {}

_M.ORDER = {
  "received", "addon_provisioned", "app_linked", "connection_configured", "authorize_url_ready",
  "awaiting_app_oauth", "app_authorized", "subscriber_updated", "awaiting_connect_oauth",
  "connect_authorized", "mappings_imported", "active",
}

-- States left by a person's action (a browser arriving at one of our URLs), not a step.
_M.PERSON = { awaiting_app_oauth = true, awaiting_connect_oauth = true }

-- States no job advances.
_M.FINAL = { active = true, failed = true, offboarded = true }

_M.INDEX = {}
for i, s in ipairs(_M.ORDER) do _M.INDEX[s] = i end

function _M.known(s) return _M.INDEX[s] ~= nil or s == "failed" or s == "offboarded" end

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
  active = "nothing: the org is connected",
  failed = "an operator fixes the cause, then resumes (POST /organizations/:org_id/resume, or the console)",
  offboarded = "nothing: the package was uninstalled",
}

function _M.next_action(s) return NEXT[s] or "unknown" end

return _M
