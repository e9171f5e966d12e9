-- offboarding.archives: an offboarded tenant's schema, kept for ARCHIVE_DAYS
-- (the tenant_archives table, sql/004). Each change is one transaction that
-- renames the schema and records it together, under the org's row lock, so a
-- crash leaves either both or neither, and a second run finds the first's work:
--   archive(db, org_id) -> the archive | false (nothing to archive: no schema, or
--                          the org is not offboarded) | nil, err
--   restore(db, org_id) -> the archive, restored | false (none within retention) | nil, err
--   prune(db)           -> the archives dropped (past drop_after) | nil, err
--   live(db, org_id)    -> the org's archive | false | nil, err
--   export_command(archive, file, database_url) -> the pg_dump argv
local config = require "config"
local pg = require "mc.pg"
local orgs = require "onboarding.orgs"

local _M = {}

-- archive_name(schema, t) -> "<schema>_archived_YYYYMMDD", cut to Postgres's 63 bytes
function _M.archive_name(schema, t)
  local suffix = "_archived_" .. os.date("!%Y%m%d", t)
  return schema:sub(1, 63 - #suffix) .. suffix
end

local function one(rows, err)
  if not rows then return nil, err end
  return rows[1] or false
end

local function exists(db, schema)
  local rows, err = db:query("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
  if not rows then return nil, err end
  return rows[1] ~= nil
end

function _M.live(db, org_id)
  return one(db:query([[SELECT * FROM tenant_archives WHERE org_id = $1
    AND restored_at IS NULL AND dropped_at IS NULL]], org_id))
end

-- The org, locked for the rest of the caller's transaction, if in `state`.
local function locked(db, org_id, state)
  local org, err = orgs.get(db, org_id, "update")
  if org == nil then return nil, err end
  if not org or org.state ~= state or type(org.schema_name) ~= "string" then return false end
  return org
end

local function archive_locked(db, org_id)
  local org, err = locked(db, org_id, "offboarded")
  if not org then return org, err end
  local kept, lerr = _M.live(db, org_id)
  if kept ~= false then return kept, lerr end -- archived already (or an error)
  local there, eerr = exists(db, org.schema_name)
  if not there then return there, eerr end
  local name = _M.archive_name(org.schema_name, os.time())
  local ok, aerr = db:exec("ALTER SCHEMA " .. pg.quote_ident(org.schema_name) .. " RENAME TO " .. pg.quote_ident(name))
  if not ok then return nil, "renaming the schema: " .. aerr end
  return one(db:query([[INSERT INTO tenant_archives (org_id, schema_name, archive_name, drop_after)
    VALUES ($1, $2, $3, now() + make_interval(days => $4)) RETURNING *]],
    org_id, org.schema_name, name, config.get("ARCHIVE_DAYS")))
end

local function restore_locked(db, org_id)
  local org, err = locked(db, org_id, "received")
  if not org then return org, err end
  local kept, lerr = one(db:query([[SELECT * FROM tenant_archives WHERE org_id = $1
    AND restored_at IS NULL AND dropped_at IS NULL AND drop_after > now()]], org_id))
  if not kept then return kept, lerr end
  local there, eerr = exists(db, kept.schema_name)
  if there == nil then return nil, eerr end
  if there then return nil, "schema " .. kept.schema_name .. " exists beside its archive " .. kept.archive_name end
  local ok, rerr = db:exec("ALTER SCHEMA " .. pg.quote_ident(kept.archive_name) .. " RENAME TO " .. pg.quote_ident(kept.schema_name))
  if not ok then return nil, "restoring the schema: " .. rerr end
  return one(db:query("UPDATE tenant_archives SET restored_at = now() WHERE id = $1 RETURNING *", kept.id))
end

local function in_transaction(db, fn, org_id)
  local result, rerr
  local ok, err = db:transaction(function()
    result, rerr = fn(db, org_id)
    if result == nil then return nil, rerr end
    return true
  end)
  if not ok then return nil, err end
  return result
end

function _M.archive(db, org_id) return in_transaction(db, archive_locked, org_id) end
function _M.restore(db, org_id) return in_transaction(db, restore_locked, org_id) end

-- One archive past its retention: dropped and marked, together.
local function drop(db, a)
  return in_transaction(db, function()
    local ok, err = db:exec("DROP SCHEMA IF EXISTS " .. pg.quote_ident(a.archive_name) .. " CASCADE")
    if not ok then return nil, err end
    return one(db:query("UPDATE tenant_archives SET dropped_at = now() WHERE id = $1 AND dropped_at IS NULL RETURNING *", a.id))
  end)
end

function _M.prune(db)
  local due, err = db:query([[SELECT * FROM tenant_archives WHERE drop_after <= now()
    AND restored_at IS NULL AND dropped_at IS NULL ORDER BY id]])
  if not due then return nil, err end
  local dropped = {}
  for _, a in ipairs(due) do
    local row, derr = drop(db, a)
    if row == nil then return nil, "dropping " .. a.archive_name .. ": " .. derr end
    if row then dropped[#dropped + 1] = row end
  end
  return dropped
end

-- pg_dump of the archive alone: its tables, indexes and rows, no owner or
-- privileges (the restoring database has its own roles).
function _M.export_command(archive, file, database_url)
  return { "pg_dump", "--no-owner", "--no-privileges", "--schema=" .. archive.archive_name,
    "--file=" .. file, "--dbname=" .. database_url }
end

return _M
