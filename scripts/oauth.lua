-- The org admin's browser hops (routes in scripts/app.lua):
--   GET /authenticate?org=ORG_ID&t=TOKEN (the link in the first mail; TOKEN sealed by
--                                        us) -> Salesforce's authorize page, with a
--                                        single-use `state`
--   GET /auth/salesforce/callback        Salesforce's answer: tokens are fetched,
--                                        the identity's org checked, tokens sealed
--   GET /connection_auth_complete/:token Heroku Connect's `next` after the admin
--                                        authorized it; the token is sealed by us
local crypto = require "mc.crypto"
local conns = require "mc.conns"
local log = require "mc.log"
local jobs = require "mc.jobs"
local config = require "config"
local db = require "lib.db"
local page = require "lib.page"
local sfid = require "lib.sfid"
local orgs = require "onboarding.orgs"
local links = require "lib.tokens"
local workflow = require "onboarding.workflow"
local salesforce = require "clients.salesforce"

local _M = {}

local STATE_PREFIX = "mc:oauth:state:"

-- The mails go out before the step that sends them records the wait, so a
-- quick admin can arrive while the org still reads as the state before it: a
-- link is good from the moment its mail is sent (states.MOVES allows both).
local SIGNING_IN = { "authorize_url_ready", "awaiting_app_oauth" }
local AUTHORIZING_CONNECT = { "subscriber_updated", "awaiting_connect_oauth" }

local function one_of(state, list)
  for _, s in ipairs(list) do if s == state then return true end end
  return false
end

local function redirect(url)
  return 302, "", { Location = url, ["Cache-Control"] = "no-store" }
end

local function load_org(id)
  local conn, err = db.conn()
  if not conn then return nil, err end
  local org, gerr = orgs.get(conn, id)
  if org == nil then return nil, gerr end
  return org, conn
end

local function unavailable(err)
  log.error("oauth: a backing service failed", { err = err })
  return page.render(503, "Please try again",
    "The service is briefly unavailable. Open the link from your e-mail again in a minute.")
end

function _M.authenticate(req)
  local id = sfid.org_id(req.query.org or "")
  if not id then return page.render(400, "Unknown link", "This link does not name a Salesforce org.") end
  local signed, why = links.open_authenticate(req.query.t)
  if signed ~= id then
    if why == "expired" then
      return page.render(403, "This link has expired", "Ask the ISV's support for a new sign-in link.")
    end
    return page.render(403, "Unknown link", "This link is not valid. Open the link from your e-mail.")
  end
  local org, conn = load_org(id)
  if org == nil then return unavailable(conn) end
  if not org then return page.render(404, "Unknown org", "No onboarding is in progress for this org.") end
  if not one_of(org.state, SIGNING_IN) then
    return page.render(409, "Nothing to do here", "This org's sign-in is not expected now (it is " .. org.state .. ").")
  end
  local r, rerr = db.redis()
  if not r then return unavailable(rerr) end
  local state = crypto.to_base64url(crypto.random(24))
  local ttl = config.get("OAUTH_STATE_TTL")
  local ok, serr = r:call("SET", STATE_PREFIX .. state, id, "EX", ttl)
  if not ok then return unavailable(serr) end
  return redirect(salesforce.authorize_url(org, state))
end

-- Takes the state: single use, so whoever GETDELs it first owns it.
local function take_state(state)
  if type(state) ~= "string" or not state:match("^[%w_-]+$") or #state > 64 then return false end
  local r, err = db.redis()
  if not r then return nil, err end
  local id, gerr = r:call("GETDEL", STATE_PREFIX .. state)
  if id == nil then return nil, gerr end
  if id == mc.null then return false end
  return id
end

-- fail_org(...) -> the failed org's row | false (it was not waiting for this
-- sign-in) | nil, err
local function fail_org(conn, org, reason)
  return orgs.transition(conn, org.org_id, "failed", "person", { from = SIGNING_IN,
    fields = { failed_step = "awaiting_app_oauth", last_error = reason },
    details = { error = reason, step = "awaiting_app_oauth" } })
end

-- The tokens are stored and the org moves on only if the org is still waiting.
local function authorized(conn, org, tokens, who)
  return orgs.transition(conn, org.org_id, "app_authorized", "person", { from = SIGNING_IN,
    details = { sf_username = who.username, instance_url = tokens.instance_url },
    fields = {
      attempts = 0, last_error = mc.null,
      access_token = salesforce.seal(org, "access_token", tokens.access_token),
      refresh_token = type(tokens.refresh_token) == "string"
        and salesforce.seal(org, "refresh_token", tokens.refresh_token) or mc.null,
      instance_url = tokens.instance_url, sf_user_id = who.user_id, sf_username = who.username,
    } })
end

-- The org has moved on: its next step is queued. A queue that fails is logged
-- (the sweep will queue the step, but the log says why it waits).
local function queue_next(id)
  local jid, err = workflow.enqueue(id)
  if not jid then log.error("onboarding: could not queue the next step", { org_id = id, err = err }) end
end

-- The web process runs this request in a coroutine that yields while Salesforce
-- answers (200-500 ms a call): its Postgres and Redis connections go back to the
-- thread's pool (WEB_CONNECTIONS) meanwhile, for the requests that need them now.
-- Take them again (db.conn()) after the calls. (Outside such a coroutine: nothing.)
local function put_back_connections()
  conns.release(coroutine.running())
end

local function moved_on()
  return page.render(409, "Nothing to do here",
    "This org's sign-in is no longer expected. Its onboarding has moved on.")
end

-- States at or past Connect's authorization: a second click on its `next` link
-- is answered as the first was.
local CONNECT_DONE = { connect_authorized = true, mappings_imported = true, active = true, degraded = true }

function _M.callback(req)
  local q = req.query
  local id, terr = take_state(q.state)
  if id == nil then return unavailable(terr) end
  if not id then
    return page.render(400, "This sign-in link has expired",
      "It was already used, or is too old. Open the link from your e-mail again.")
  end
  local org, conn = load_org(id)
  if org == nil then return unavailable(conn) end
  if not org then return page.render(404, "Unknown org", "No onboarding is in progress for this org.") end
  if q.error then
    log.warn("salesforce sign-in refused", { org_id = id, error = q.error })
    local noted, nerr = orgs.note(conn, org, "failure",
      { error = "salesforce: " .. tostring(q.error), description = q.error_description })
    if not noted then return unavailable(nerr) end
    return page.render(403, "Access was not granted",
      "Salesforce says: " .. tostring(q.error_description or q.error)
        .. ". To connect your org, open the link from your e-mail again and allow access.")
  end
  if type(q.code) ~= "string" or q.code == "" then
    return page.render(400, "Bad answer", "Salesforce sent no authorization code.")
  end
  put_back_connections()
  local tokens, xerr = salesforce.exchange(org, q.code)
  if not tokens then
    log.error("salesforce token exchange failed", { org_id = id, err = xerr })
    return page.render(502, "Salesforce did not confirm the sign-in", "Please open the link from your e-mail again.")
  end
  local who, ierr = salesforce.identity(org, tokens)
  if not who then
    log.error("salesforce identity failed", { org_id = id, err = ierr })
    return page.render(502, "Salesforce did not confirm the sign-in", "Please open the link from your e-mail again.")
  end
  local cerr
  conn, cerr = db.conn()
  if not conn then return unavailable(cerr) end
  local signed_in = sfid.to18(who.organization_id)
  if signed_in ~= id then
    local reason = "signed in to org " .. tostring(who.organization_id) .. ", but the install came from " .. id
    log.warn("oauth org mismatch: onboarding stopped", { org_id = id, signed_in = who.organization_id })
    local failed, ferr = fail_org(conn, org, reason)
    if failed == nil then return unavailable(ferr) end
    if not failed then return moved_on() end
    workflow.announce(failed, failed.from_state, "failed")
    return page.render(403, "Wrong Salesforce org",
      "You signed in to a different org than the one that installed the package. "
        .. "Onboarding has stopped; contact support.")
  end
  local row, aerr = authorized(conn, org, tokens, who)
  if row == nil then return unavailable(aerr) end
  if not row then return moved_on() end
  workflow.announce(row, row.from_state, "app_authorized")
  queue_next(id)
  return page.render(200, "Thank you",
    "Your org is being connected. You will get one more e-mail to authorize Heroku Connect.")
end

function _M.connect_complete(req)
  local id, connection_id = links.open_connect(req.params.token or "")
  if not id then return page.render(404, "Unknown link", "This link is not valid.") end
  local org, conn = load_org(id)
  if org == nil then return unavailable(conn) end
  if not org or org.connection_id ~= connection_id then
    return page.render(404, "Unknown link", "This link is not valid.")
  end
  local moved, merr, cur = orgs.transition(conn, id, "connect_authorized", "person",
    { from = AUTHORIZING_CONNECT, fields = { attempts = 0 } })
  if moved == nil then return unavailable(merr) end
  if moved then
    workflow.announce(moved, moved.from_state, "connect_authorized")
    queue_next(id)
  elseif cur and cur.state == "degraded" then
    -- authorized again from a degraded org's mail: look now, not at the next visit
    local jid, jerr = jobs.enqueue("health.check", { id })
    if not jid then log.warn("could not queue a health check", { org_id = id, err = jerr }) end
  elseif not (cur and CONNECT_DONE[cur.state]) then
    return page.render(409, "Nothing to do here",
      "This org's Heroku Connect authorization is not expected now. Contact the ISV's support.")
  end
  return page.render(200, "Heroku Connect is authorized", "Your data starts syncing now. You can close this page.")
end

return _M
