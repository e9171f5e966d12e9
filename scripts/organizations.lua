-- The tenants' HTTP API (routes in scripts/app.lua):
--   POST   /organizations               the package's post-install callback (signed)
--   GET    /organizations/:org_id       state, history, next action (operator)
--   POST   /organizations/:org_id/resume  a failed org runs its failed step again (operator)
--   DELETE /organizations/:org_id       the package's uninstall callback (signed)
-- Handlers answer fast: the work happens in the onboarding.advance job.
local json = require "mc.json"
local log = require "mc.log"
local db = require "lib.db"
local signature = require "lib.signature"
local operator = require "lib.operator"
local sfid = require "lib.sfid"
local install = require "onboarding.install"
local orgs = require "onboarding.orgs"
local must = orgs.must
local states = require "onboarding.states"
local workflow = require "onboarding.workflow"
local operations = require "onboarding.operations"
local salesforce = require "clients.salesforce"

local _M = {}

local function fail(status, message, extra)
  local body = { error = message }
  for k, v in pairs(extra or {}) do body[k] = v end
  return status, body
end

local function state_url(org_id) return salesforce.app_url() .. "/organizations/" .. org_id end

local function accepted(org, note)
  return 202, { org_id = org.org_id, state = org.state, url = state_url(org.org_id), note = note },
    { Location = state_url(org.org_id) }
end

local function signed(req)
  local ok, reason, status = signature.verify(req)
  if ok then return true end
  log.warn("callback refused", { path = req.path, reason = reason, ip = req.ip })
  return nil, fail(status or 401, reason)
end

local function database()
  local conn, err = db.conn()
  if not conn then log.error("organizations: no database", { err = err }) end
  return conn
end

-- A first install: the row and its first event, in one transaction.
local function create(conn, f, request)
  return conn:transaction(function()
    local rows, err = conn:query([[INSERT INTO organizations
      (org_id, org_name, admin_email, installer_id, package_version, environment, login_domain, next_attempt_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7, now()) ON CONFLICT (org_id) DO NOTHING RETURNING *]],
      f.org_id, f.org_name, f.admin_email, f.installer_id, f.package_version or f.previous_version,
      f.environment, f.login_domain)
    if not rows then return nil, err end
    if not rows[1] then return false end
    assert(orgs.event(conn, f.org_id, nil, "received", "request", request))
    return rows[1]
  end)
end

-- Back from offboarded (a reinstall): everything the last onboarding learned is dropped.
local function reinstall(conn, f, request)
  return conn:transaction(function()
    local org = orgs.update(conn, f.org_id, {
      state = "received", org_name = f.org_name, admin_email = f.admin_email, environment = f.environment,
      login_domain = f.login_domain or mc.null, installer_id = f.installer_id or mc.null, attempts = 0,
      failed_step = mc.null, last_error = mc.null, addon_id = mc.null, connection_id = mc.null,
      region_url = mc.null, authorize_url = mc.null, access_token = mc.null, refresh_token = mc.null,
      instance_url = mc.null, offboarded_at = mc.null, activated_at = mc.null, progress = {},
    }, { due = 0, new_state = true, where_state = "offboarded" })
    if not org then return org end
    assert(orgs.event(conn, f.org_id, "offboarded", "received", "request", request))
    return org
  end)
end

function _M.create(req)
  local ok, status, body = signed(req)
  if not ok then return status, body end
  local doc, jerr = req.json()
  if doc == nil then return fail(400, "body is not valid JSON: " .. tostring(jerr)) end
  local f, errors = install.parse(doc)
  if not f then return fail(400, "invalid callback", { fields = errors }) end
  local conn = database()
  if not conn then signature.release(req); return fail(503, "the database is unavailable") end
  local request = { is_upgrade = f.is_upgrade, is_push = f.is_push, previous_version = f.previous_version,
    installer_id = f.installer_id, ip = req.ip }
  local org, err = create(conn, f, request)
  if org == nil then
    log.error("organizations: insert failed", { err = err })
    signature.release(req) -- the package may send the same request again
    return fail(503, "could not store the org")
  end
  if org then
    workflow.enqueue(org.org_id)
    log.info("org received", { org_id = org.org_id, environment = org.environment })
    return accepted(org)
  end
  local existing = must(orgs.get(conn, f.org_id))
  if existing.state == "offboarded" then
    org = must(reinstall(conn, f, request))
    if org then workflow.enqueue(org.org_id); return accepted(org, "reinstalled") end
  elseif f.is_upgrade then
    request.package_upgrade = true
    org = operations.reimport_mapping(conn, f.org_id, request)
    if org then return accepted(org, "upgrade: the mapping is imported again") end
    return accepted(existing, "upgrade: onboarding is still in progress, it imports the current mapping")
  end
  return fail(409, "org " .. f.org_id .. " is already onboarded", { state = existing.state, url = state_url(f.org_id) })
end

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

function _M.show(req)
  local id, conn, body, headers = operator_org(req)
  if not id then return conn, body, headers end
  local org = must(orgs.get(conn, id))
  if not org then return fail(404, "no such org") end
  local out = orgs.public(org)
  out.next_action = states.next_action(org.state)
  out.next_attempt_at = org.next_attempt_at
  out.attempts = org.attempts
  local events = {} -- a plain array: rows also carry .columns and .affected
  for i, e in ipairs(assert(orgs.events(conn, id))) do e.id = nil; events[i] = e end
  out.events = json.array(events)
  return 200, out
end

function _M.resume(req)
  local id, conn, body, headers = operator_org(req)
  if not id then return conn, body, headers end
  local org, err = operations.resume(conn, id, { resumed_by = "http", ip = req.ip })
  if not org then return fail(err == "no such org" and 404 or 409, err) end
  return accepted(org, "resumed at " .. org.state)
end

-- The uninstall handler's callback. Its signed body names the org, so a
-- signature made for one org's uninstall cannot offboard another. The package's
-- callout must finish well inside Heroku's 30 s: when a step holds the org's row
-- for more than 3 s, the offboarding is left to the onboarding.offboard job.
function _M.destroy(req)
  local ok, status, body = signed(req)
  if not ok then return status, body end
  local id = org_param(req)
  if not id then return fail(404, "no such org") end
  local doc = req.json()
  if type(doc) ~= "table" or sfid.org_id(tostring(doc.org_id or "")) ~= id then
    signature.release(req)
    return fail(400, "the signed body must be {\"org_id\": \"" .. id .. "\"}")
  end
  local conn = database()
  if not conn then signature.release(req); return fail(503, "the database is unavailable") end
  local details = { uninstall = true, ip = req.ip }
  local org, err = operations.offboard(conn, id, details, 3000)
  if err == "busy" then
    require("mc.jobs").enqueue("onboarding.offboard", { id, "transition" })
    return 202, { org_id = id, state = "offboarding", url = state_url(id),
      note = "a step is running: the offboarding follows when it ends" }
  end
  if not org then return fail(404, err) end
  return accepted(org, "offboarding: the Heroku Connect add-on is removed; the schema and its data are kept")
end

return _M
