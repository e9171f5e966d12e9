-- lib.tenant: an org as the layers above onboarding see it -- its tenant view
-- (no tokens, sealed or not), read without touching its onboarding state. The
-- organizations table belongs to onboarding.orgs; this reads it for the
-- tenant's own work (social records, hooks, pages).
local _M = {}

-- The fields of a row a hook or a page may see: no tokens, sealed or not.
function _M.view(row)
  return {
    org_id = row.org_id, org_name = row.org_name, admin_email = row.admin_email,
    environment = row.environment, login_domain = row.login_domain, state = row.state,
    schema_name = row.schema_name, db_key = row.db_key, connection_id = row.connection_id, addon_id = row.addon_id,
    installer_id = row.installer_id, package_version = row.package_version,
    failed_step = row.failed_step, last_error = row.last_error,
    created_at = row.created_at, updated_at = row.updated_at, activated_at = row.activated_at,
  }
end

-- active(conn, org_id) -> the tenant's view, when it is onboarded (active, or
-- degraded: its tables are there, and rows written meanwhile sync once it heals)
-- with a schema | false (unknown, not onboarded yet, or gone) | nil, err
function _M.active(conn, org_id)
  local rows, err = conn:query("SELECT * FROM organizations WHERE org_id = $1", org_id)
  if not rows then return nil, err end
  local row = rows[1]
  if not row or (row.state ~= "active" and row.state ~= "degraded") or type(row.schema_name) ~= "string" then
    return false
  end
  return _M.view(row)
end

-- Schemas a tenant must never be given: ours, Postgres's, Connect's default.
local RESERVED = { public = true, salesforce = true, information_schema = true }

-- schema_problem(name) -> nil when name can be a tenant's schema, else why not:
-- what the schema_name hook's answer is checked against before anything is built.
function _M.schema_problem(name)
  if type(name) == "string" and #name <= 63 and name:match("^[a-z_][a-z0-9_]*$") and name:sub(1, 3) ~= "pg_"
      and not RESERVED[name] then
    return nil
  end
  return "tenant hook schema_name gave " .. tostring(name)
    .. ", not a tenant schema name (^[a-z_][a-z0-9_]{0,62}$, no pg_ prefix, not public/salesforce)"
end

return _M
