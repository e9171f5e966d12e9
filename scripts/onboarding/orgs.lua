-- onboarding.orgs: the organizations table and its event log (sql/001). Every
-- function takes the connection to use, so a caller inside a transaction passes
-- its own; rows come back as column-keyed tables.
local json = require "mc.json"

local _M = {}

-- get(db, org_id[, lock]) -> row | false | nil, err. lock = "update": FOR UPDATE;
-- "skip": FOR UPDATE SKIP LOCKED (false when another holds it, or no row).
-- must(v, err, ...) -> v, unless v is nil (a database error: raised). false --
-- "no such row", "not in that state" -- is an answer, and comes back as is.
function _M.must(v, err, ...)
  if v == nil then error(err or "database error", 2) end
  return v, err, ...
end

-- Two computed columns come along: `early` (the step is not due for another
-- second or more) and `in_state` (seconds since the org entered its state).
function _M.get(db, org_id, lock)
  local sql = [[SELECT *, coalesce(next_attempt_at > now() + interval '1 second', false) AS early,
    extract(epoch FROM now() - state_since)::float8 AS in_state FROM organizations WHERE org_id = $1]]
  if lock == "update" then sql = sql .. " FOR UPDATE"
  elseif lock == "skip" then sql = sql .. " FOR UPDATE SKIP LOCKED" end
  local rows, err, sqlstate = db:query(sql, org_id)
  if not rows then return nil, err, sqlstate end
  return rows[1] or false
end

-- Columns a caller may set through update(); anything else is a programming error.
local COLUMNS = {
  state = true, failed_step = true, last_error = true, attempts = true, addon_name = true,
  addon_id = true, connection_id = true, region_url = true, schema_name = true,
  authorize_url = true, instance_url = true, sf_user_id = true, sf_username = true,
  access_token = true, refresh_token = true, org_name = true, admin_email = true,
  installer_id = true, package_version = true, environment = true, login_domain = true,
  activated_at = true, offboarded_at = true, progress = true,
}

-- update(db, org_id, fields[, opts]) -> row | false (no row matched) | nil, err.
-- fields values: a value, or mc.null for NULL. opts.due: seconds from now when the
-- step is due again (false: NULL, waiting on a person); opts.new_state: also
-- resets state_since; opts.where_state: only if the org is still in that state
-- (or one of a list of states).
function _M.update(db, org_id, fields, opts)
  opts = opts or {}
  local sets, args = { "updated_at = now()" }, { org_id }
  local keys = {}
  for k in pairs(fields) do
    if not COLUMNS[k] then error("orgs.update: unknown column " .. tostring(k), 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    args[#args + 1] = fields[k]
    sets[#sets + 1] = string.format("%s = $%d", k, #args)
  end
  if opts.due == false then
    sets[#sets + 1] = "next_attempt_at = NULL"
  elseif opts.due then
    args[#args + 1] = opts.due
    sets[#sets + 1] = string.format("next_attempt_at = now() + make_interval(secs => $%d)", #args)
  end
  if opts.new_state then sets[#sets + 1] = "state_since = now()" end
  local sql = "UPDATE organizations SET " .. table.concat(sets, ", ") .. " WHERE org_id = $1"
  if opts.where_state then -- one state, or a list of them
    local states = type(opts.where_state) == "table" and opts.where_state or { opts.where_state }
    args[#args + 1] = "{" .. table.concat(states, ",") .. "}"
    sql = sql .. string.format(" AND state = ANY($%d::text[])", #args)
  end
  local rows, err = db:query(sql .. " RETURNING *", table.unpack(args, 1, #args))
  if not rows then return nil, err end
  return rows[1] or false
end

-- event(db, org_id, from, to, kind, details) -> true | nil, err
function _M.event(db, org_id, from, to, kind, details)
  local rows, err = db:query(
    "INSERT INTO onboarding_events (org_id, from_state, to_state, kind, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
    org_id, from or mc.null, to, kind or "transition", json.encode(details or {}))
  if not rows then return nil, err end
  return true
end

-- events(db, org_id[, limit]) -> the org's events, oldest first
function _M.events(db, org_id, limit)
  return db:query([[SELECT id, from_state, to_state, kind, details, created_at FROM
    (SELECT * FROM onboarding_events WHERE org_id = $1 ORDER BY id DESC LIMIT $2) e ORDER BY id]],
    org_id, limit or 200)
end

-- The fields of a row a hook or a page may see: no tokens, sealed or not.
function _M.public(row)
  return {
    org_id = row.org_id, org_name = row.org_name, admin_email = row.admin_email,
    environment = row.environment, login_domain = row.login_domain, state = row.state,
    schema_name = row.schema_name, connection_id = row.connection_id, addon_id = row.addon_id,
    installer_id = row.installer_id, package_version = row.package_version,
    failed_step = row.failed_step, last_error = row.last_error,
    created_at = row.created_at, updated_at = row.updated_at, activated_at = row.activated_at,
  }
end

return _M
