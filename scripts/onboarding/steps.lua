-- onboarding.steps: what runs while an org is in each state. A step gets the
-- org's locked row and returns one of
--   step.done(next_state, fields, details)  -- the work is done: move on
--   step.wait(reason, fields)               -- something asynchronous is not ready: poll later
--   nil, err, retryable                     -- failed: retry later, or (permanent) fail the org
-- Every step is idempotent: after a crash it runs again from the top and finds
-- what the earlier run did (the add-on by its name, the connection by the
-- add-on, Connect's own configuration) instead of doing it twice.
local config = require "config"
local http = require "mc.http"
local heroku = require "clients.heroku"
local connect = require "clients.connect"
local salesforce = require "clients.salesforce"
local sfid = require "lib.sfid"
local tokens = require "lib.tokens"
local hooks = require "lib.hooks"
local tenant = require "lib.tenant"
local mapping = require "onboarding.mapping"
local notify = require "onboarding.notify"
local archives = require "offboarding.archives"
local db = require "lib.db"

local _M = {}

local HEALTHY_CONNECTION = connect.HEALTHY_CONNECTION
local SYNCED_MAPPING = connect.SYNCED_MAPPING
local BROKEN_MAPPING = connect.BROKEN_MAPPING
-- Broken now, but Connect recovers them by itself once the database answers (a
-- Postgres restart or failover): onboarding waits, ONBOARDING_WAIT_LIMIT at most,
-- instead of failing the org for a blip (found by spec/chaos/onboarding_faults_spec.lua)
local RECOVERING_MAPPING = { DB_UNAVAILABLE = true }
local REPATCH_AFTER = 600 -- seconds: a PATCH that never showed up is sent again

function _M.done(to, fields, details) return { to = to, fields = fields or {}, details = details } end
function _M.wait(reason, fields) return { wait = reason, fields = fields or {} } end

local function permanent(err) return nil, err, false end

local function attachment_name(org) return "HEROKUCONNECT_" .. org.org_id:upper() end

-- The tenant's database (its db_key): the `database` hook's choice among
-- CONNECT_DB_KEY and TENANT_DATABASES, made once and recorded with the schema.
local LOAD = [[SELECT coalesce(db_key, $1) AS key, count(*)::int AS n FROM organizations
  WHERE state <> 'offboarded' AND org_id <> $2 GROUP BY 1]]

local function database(org, conn)
  if type(org.db_key) == "string" then return org.db_key end
  local keys = config.database_keys()
  if #keys == 1 then return keys[1] end
  local rows, err = conn:query(LOAD, keys[1], org.org_id)
  if not rows then return nil, "counting the tenants per database: " .. err, true end
  local load = {}
  for _, r in ipairs(rows) do load[r.key] = r.n end
  local choices = {}
  for i, k in ipairs(keys) do choices[i] = { key = k, tenants = load[k] or 0 } end
  local ok, key = hooks.run(org.tenant, "database", choices)
  if not ok then return nil, key end
  for _, k in ipairs(keys) do if k == key then return key end end
  return nil, "tenant hook database gave " .. tostring(key) .. ", not one of " .. table.concat(keys, ", ")
end

-- The tenant's schema: its hook's answer, checked before anything is provisioned
-- (a name another org holds would otherwise surface as a unique violation later).
local function schema_name(org, conn)
  if org.schema_name ~= nil and org.schema_name ~= mc.null then return org.schema_name end
  local ok, name = hooks.run(org.tenant, "schema_name")
  if not ok then return nil, name end
  local problem = tenant.schema_problem(name)
  if problem then return nil, problem end
  local rows, err = conn:query("SELECT org_id FROM organizations WHERE schema_name = $1 AND org_id <> $2",
    name, org.org_id)
  if not rows then return nil, "checking the schema name: " .. err, true end
  if rows[1] then return nil, "schema " .. name .. " already belongs to org " .. rows[1].org_id end
  return name
end

_M.received = function(org, ctx)
  -- a reinstall within ARCHIVE_DAYS gets its archived schema back, rows and all
  local restored, rerr = archives.restore(ctx.conn, org.org_id)
  if restored == nil then return nil, "restoring the archived schema: " .. rerr, true end
  local schema, serr, retry_check = schema_name(org, ctx.conn)
  if not schema then return nil, serr, retry_check or false end
  local key, kerr, kretry = database(org, ctx.conn)
  if not key then return nil, kerr, kretry or false end
  local name = heroku.addon_name(org.org_id)
  local addon, err, retry = heroku.create_addon(name, attachment_name(org))
  if not addon then return nil, err, retry end
  local fields = { schema_name = schema, db_key = key, addon_name = name, addon_id = addon.id }
  if addon.state == "provisioned" then return _M.done("addon_provisioned", fields) end
  if addon.state ~= "provisioning" then
    return permanent("heroku: add-on " .. name .. " is " .. tostring(addon.state))
  end
  return _M.wait("the add-on is provisioning", fields)
end

_M.addon_provisioned = function()
  local linked, err, retry = connect.link(heroku.app())
  if linked == nil then return nil, err, retry end
  if not linked then return _M.wait("Heroku Connect does not list the add-on yet") end
  return _M.done("app_linked")
end

_M.app_linked = function(org)
  local conn_id, region = org.connection_id, org.region_url
  if conn_id == mc.null or region == mc.null then
    local found, err, retry = connect.find(heroku.app(), org.addon_name)
    if found == nil then return nil, err, retry end
    if not found then return _M.wait("Heroku Connect does not list the connection yet") end
    conn_id, region = found.id, found.region_url
  end
  local fields = { connection_id = conn_id, region_url = region }
  local conn, err, retry = connect.get(region, conn_id)
  if not conn then return nil, err, retry end
  if conn.schema_name == org.schema_name and conn.db_key == db.key(org) then
    return _M.done("connection_configured", fields)
  end
  local progress = org.progress
  if not progress.patched_at or os.time() - progress.patched_at > REPATCH_AFTER then
    local ok, perr, pretry = connect.configure(region, conn_id, org.schema_name, db.key(org))
    if not ok then return nil, perr, pretry end
    fields.progress = { patched_at = os.time() }
  end
  return _M.wait("Heroku Connect has not applied the schema and database yet", fields)
end

-- authorize_url(org) -> Connect's authorize URL for the org's admin | nil, err,
-- retryable; Connect sends the admin back to our sealed `next` once approved.
-- Onboarding's second mail carries it, and so does a degraded org's mail when
-- Connect lost its authorization.
function _M.authorize_url(org)
  local body = {
    environment = org.environment,
    ["next"] = config.app_url() .. "/connection_auth_complete/" .. tokens.connect(org, org.connection_id),
  }
  if org.environment == "custom" then body.domain = "https://" .. org.login_domain end
  return connect.authorize_url(org.region_url, org.connection_id, body)
end

_M.connection_configured = function(org)
  local url, err, retry = _M.authorize_url(org)
  if not url then return nil, err, retry end
  return _M.done("authorize_url_ready", { authorize_url = url })
end

_M.authorize_url_ready = function(org)
  local ok, err, retry = notify.send(org, "authenticate", {
    url = config.app_url() .. "/authenticate?"
      .. http.encode_query({ org = org.org_id, t = tokens.authenticate(org) }) })
  if not ok then return nil, err, retry end
  return _M.done("awaiting_app_oauth", nil, { mail = ok })
end

_M.app_authorized = function(org, ctx)
  local res, err, retry, reauth = salesforce.apex(org, "AuthConnection",
    { connectionId = org.connection_id, authorizeUrl = org.authorize_url }, ctx.save)
  if reauth then -- the org's session is gone for good: the admin signs in again
    return _M.done("authorize_url_ready", { access_token = mc.null, refresh_token = mc.null }, { reauth = err })
  end
  if not res then return nil, err, retry end
  return _M.done("subscriber_updated")
end

_M.subscriber_updated = function(org)
  local ok, err, retry = notify.send(org, "authorize_connect", { url = org.authorize_url })
  if not ok then return nil, err, retry end
  return _M.done("awaiting_connect_oauth", nil, { mail = ok })
end

-- Connect must be authorized by the tenant's own org: the package-wide callback
-- secret proves nothing about which org sent it (docs/reliability.md §2).
local function authorized_org(conn)
  local info = type(conn.sf_info) == "table" and conn.sf_info or {}
  local id = info.organization_id or conn.organization_id
  if type(id) ~= "string" then return nil end
  return sfid.to18(id)
end

_M.connect_authorized = function(org)
  local conn, err, retry = connect.get(org.region_url, org.connection_id)
  if not conn then return nil, err, retry end
  local authorized = authorized_org(conn)
  if not authorized then return _M.wait("Heroku Connect shows no Salesforce authorization yet") end
  if authorized ~= org.org_id then
    return permanent("Heroku Connect was authorized with org " .. authorized .. ", not " .. org.org_id)
  end
  local base, berr = mapping.base(org.org_id)
  if not base then return permanent(berr) end
  local ok, doc = hooks.run(org.tenant, "mapping", base)
  if not ok then return permanent(doc) end
  local valid, verr = mapping.validate(doc)
  if not valid then return permanent("invalid mapping: " .. verr) end
  local imported, ierr, iretry = connect.import(org.region_url, org.connection_id, mapping.prepare(doc))
  if not imported then return nil, ierr, iretry end
  return _M.done("mappings_imported", nil, { mappings = #doc.mappings })
end

local function sync_state(conn)
  local pending = {}
  for _, m in ipairs(type(conn.mappings) == "table" and conn.mappings or {}) do
    if BROKEN_MAPPING[m.state] and not RECOVERING_MAPPING[m.state] then
      return nil, string.format("mapping %s is %s%s", m.object_name, m.state,
        type(m.state_description) == "string" and (": " .. m.state_description) or "")
    end
    if not SYNCED_MAPPING[m.state] then pending[#pending + 1] = m.object_name .. " " .. tostring(m.state) end
  end
  if #(conn.mappings or {}) == 0 then pending[1] = "no mappings listed yet" end
  if not HEALTHY_CONNECTION[conn.state] then pending[#pending + 1] = "connection " .. tostring(conn.state) end
  return pending
end

_M.mappings_imported = function(org)
  local conn, err, retry = connect.get(org.region_url, org.connection_id, true)
  if not conn then return nil, err, retry end
  local pending, broken = sync_state(conn)
  if not pending then return permanent(broken) end
  if #pending > 0 then return _M.wait("syncing: " .. table.concat(pending, ", ")) end
  notify.send(org, "active", { schema_name = org.schema_name }) -- a courtesy: its failure does not hold the org back
  return _M.done("active", { activated_at = os.date("!%Y-%m-%dT%H:%M:%SZ") })
end

return _M
