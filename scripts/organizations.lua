-- The tenants' HTTP API (routes in scripts/app.lua):
--   POST   /organizations               the package's post-install callback (signed)
--   GET    /organizations               the tenants: filtered, sorted, a page at a time (operator)
--   GET    /organizations/:org_id       state, history, next action (operator)
--   POST   /organizations/:org_id/resume  a failed org runs its failed step again (operator)
--   DELETE /organizations/:org_id       the package's uninstall callback (signed)
-- Handlers answer fast: the work happens in the onboarding.advance job.
local json = require "mc.json"
local config = require "config"
local jobs = require "mc.jobs"
local log = require "mc.log"
local db = require "lib.db"
local signature = require "lib.signature"
local operator = require "lib.operator"
local sfid = require "lib.sfid"
local install = require "onboarding.install"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local workflow = require "onboarding.workflow"
local operations = require "onboarding.operations"
local listing = require "onboarding.listing"
local record = require "watch.record"

local _M = {}

local function fail(status, message, extra)
  local body = { error = message }
  for k, v in pairs(extra or {}) do body[k] = v end
  return status, body
end

local function state_url(org_id) return config.app_url() .. "/organizations/" .. org_id end

local function accepted(org, note)
  return 202, { org_id = org.org_id, state = org.state, url = state_url(org.org_id), note = note },
    { Location = state_url(org.org_id) }
end

-- signed(handler) -> a handler that runs only for a verified callback, and
-- gives the signature back (signature.release) whenever its answer is not a
-- 2xx: nothing was done, so the package may send the very same request again.
local function signed(handler)
  return function(req)
    local ok, reason, status = signature.verify(req)
    if not ok then
      log.warn("callback refused", { path = req.path, reason = reason, ip = req.ip })
      return fail(status or 401, reason)
    end
    local code, body, headers = handler(req)
    if code < 200 or code > 299 then signature.release(req) end
    return code, body, headers
  end
end

local function database()
  local conn, err = db.conn()
  if not conn then log.error("organizations: no database", { err = err }) end
  return conn
end

local function unavailable(what, err)
  log.error("organizations: " .. what, { err = err })
  return fail(503, "the database is unavailable")
end

-- Back from offboarded (a reinstall): everything the last onboarding learned is dropped.
local function reinstall(conn, f, request)
  return orgs.transition(conn, f.org_id, "received", "package", { from = "offboarded", details = request, fields = {
    org_name = f.org_name, admin_email = f.admin_email, environment = f.environment,
    login_domain = f.login_domain or mc.null, installer_id = f.installer_id or mc.null, attempts = 0,
    failed_step = mc.null, last_error = mc.null, addon_id = mc.null, connection_id = mc.null,
    region_url = mc.null, authorize_url = mc.null, access_token = mc.null, refresh_token = mc.null,
    instance_url = mc.null, offboarded_at = mc.null, activated_at = mc.null, progress = {},
  } })
end

-- The org exists: a reinstall, an upgrade, or a duplicate.
local function known(conn, f, request)
  local existing, err = orgs.get(conn, f.org_id)
  if not existing then return unavailable("reading the org", err or "the row is gone") end
  if existing.state == "offboarded" then
    local org, rerr = reinstall(conn, f, request)
    if org == nil then return unavailable("reinstall", rerr) end
    if org then workflow.enqueue(org.org_id); return accepted(org, "reinstalled") end
  elseif f.is_upgrade then
    request.package_upgrade = true
    local org, rerr = operations.reimport_mapping(conn, f.org_id, request, "package")
    if org == nil then return unavailable("upgrade", rerr) end
    if org then return accepted(org, "upgrade: the mapping is imported again") end
    return accepted(existing, "upgrade: onboarding is still in progress, it imports the current mapping")
  end
  return fail(409, "org " .. f.org_id .. " is already onboarded", { state = existing.state, url = state_url(f.org_id) })
end

_M.create = signed(function(req)
  local doc, jerr = req.json()
  if doc == nil then return fail(400, "body is not valid JSON: " .. tostring(jerr)) end
  local f, errors = install.parse(doc)
  if not f then return fail(400, "invalid callback", { fields = errors }) end
  local conn = database()
  if not conn then return fail(503, "the database is unavailable") end
  local request = { is_upgrade = f.is_upgrade, is_push = f.is_push, previous_version = f.previous_version,
    installer_id = f.installer_id, ip = req.ip }
  f.package_version = f.package_version or f.previous_version
  local org, err = orgs.create(conn, f, request)
  if org == nil then return unavailable("insert failed", err) end
  if not org then return known(conn, f, request) end
  workflow.enqueue(org.org_id)
  log.info("org received", { org_id = org.org_id, environment = org.environment })
  return accepted(org)
end)

local function org_param(req)
  local id = sfid.org_id(req.params.org_id or "")
  return id
end

-- The prologue of an operator's call on one org -> id, conn | nil, status, body, headers
local function operator_org(req)
  local ok, status, body, headers = operator.check(req)
  if not ok then return nil, status, body, headers end
  local id = org_param(req)
  if not id then return nil, fail(404, "no such org") end
  local conn = database()
  if not conn then return nil, fail(503, "the database is unavailable") end
  return id, conn
end

function _M.index(req)
  local ok, status, body, headers = operator.check(req)
  if not ok then return status, body, headers end
  local q, param, why = listing.parse(req.query)
  if not q then return fail(400, param .. ": " .. why, { param = param }) end
  local conn = database()
  if not conn then return fail(503, "the database is unavailable") end
  local page, err, cwhy = listing.page(conn, q, operator.key("cursor"))
  if page == nil then return unavailable("listing the orgs", err) end
  if not page then return fail(400, err .. ": " .. cwhy, { param = err }) end
  for _, item in ipairs(page.items) do item.url = state_url(item.org_id) end
  return 200, page
end

function _M.show(req)
  local id, conn, body, headers = operator_org(req)
  if not id then return conn, body, headers end
  local org, err = orgs.get(conn, id)
  if org == nil then return unavailable("reading the org", err) end
  if not org then return fail(404, "no such org") end
  local out = orgs.public(org)
  out.next_action = states.next_action(org.state)
  out.next_attempt_at = org.next_attempt_at
  out.attempts = org.attempts
  local events = {} -- a plain array: rows also carry .columns and .affected
  local rows, eerr = orgs.events(conn, id)
  if not rows then return unavailable("reading the events", eerr) end
  for i, e in ipairs(rows) do e.id = nil; events[i] = e end
  out.events = json.array(events)
  local seen, herr = record.get(conn, id)
  if seen == nil then return unavailable("reading the health", herr) end
  out.health = seen and { checked_at = seen.checked_at, connection_state = seen.connection_state,
    mappings = seen.mappings, problems = seen.problems, error = seen.error, last_sync_at = seen.last_sync_at,
    episode_since = seen.episode_since } or mc.null
  return 200, out
end

function _M.resume(req)
  local id, conn, body, headers = operator_org(req)
  if not id then return conn, body, headers end
  local org, err = operations.resume(conn, id, { resumed_by = "http", ip = req.ip })
  if org == nil then return unavailable("resume", err) end
  if not org then return fail(err == "no such org" and 404 or 409, err) end
  return accepted(org, "resumed at " .. org.state)
end

local OFFBOARDING = "offboarding: the connection is paused, the Heroku Connect add-on removed, the schema "
  .. "archived with its data for ARCHIVE_DAYS (a reinstall before then restores it)"

-- The uninstall handler's callback. Its signed body names the org, so a
-- signature made for one org's uninstall cannot offboard another. The package's
-- callout must finish well inside Heroku's 30 s: when a step holds the org's row
-- for more than 3 s, the offboarding is left to the onboarding.offboard job.
_M.destroy = signed(function(req)
  local id = org_param(req)
  if not id then return fail(404, "no such org") end
  local doc = req.json()
  if type(doc) ~= "table" or sfid.org_id(tostring(doc.org_id or "")) ~= id then
    return fail(400, "the signed body must be {\"org_id\": \"" .. id .. "\"}")
  end
  local conn = database()
  if not conn then return fail(503, "the database is unavailable") end
  local details = { uninstall = true, ip = req.ip }
  local org, err = operations.offboard(conn, id, details, 3000)
  if org == nil and err == "busy" then
    local jid, jerr = jobs.enqueue("onboarding.offboard", { id, "transition" })
    if not jid then return unavailable("deferring the offboarding", jerr) end
    return 202, { org_id = id, state = "offboarding", url = state_url(id),
      note = "a step is running: the offboarding follows when it ends" }
  end
  if org == nil then return unavailable("offboard", err) end
  if not org then return fail(404, err) end
  return accepted(org, OFFBOARDING)
end)

-- An operator lets a tenant go (POST /organizations/:org_id/offboard): what an
-- uninstall does, without the package. A step holding the row answers 409.
function _M.offboard(req)
  local id, conn, body, headers = operator_org(req)
  if not id then return conn, body, headers end
  local org, err = operations.offboard(conn, id, { offboarded_by = "http", ip = req.ip }, 3000, "operator")
  if org == nil and err == "busy" then return fail(409, "a step of this org is running: try again in a moment") end
  if org == nil then return unavailable("offboard", err) end
  if not org then return fail(err == "no such org" and 404 or 409, err) end
  return accepted(org, OFFBOARDING)
end

return _M
