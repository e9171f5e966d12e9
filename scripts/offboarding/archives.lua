-- offboarding.archives: an offboarded tenant's schema, kept for ARCHIVE_DAYS
-- (the tenant_archives table, sql/004, in the app's database). The schema lives
-- in the tenant's own database (lib.db.tenant: its db_key), so a change is two
-- steps, each safe to repeat: the record first, in a transaction holding the
-- org's row lock; then the schema made to match it. A crash between leaves a
-- record whose schema is not renamed yet, and the next run renames it.
--   archive(db, org_id) -> the archive | false (nothing to archive: no schema, or
--                          the org is not offboarded) | nil, err
--   restore(db, org_id) -> the archive, restored | false (none within retention) | nil, err
--   prune(db)           -> the archives dropped (past drop_after) | nil, err
--   live(db, org_id)    -> the org's archive | false | nil, err
--   export_command(archive, file, database_url) -> the pg_dump argv
local config = require "config"
local pg = require "mc.pg"
local orgs = require "onboarding.orgs"
local tenant_db = require "lib.db"

local _M = {}

-- archive_name(schema, t) -> "<schema>_archived_YYYYMMDD", cut to Postgres's 63 bytes
function _M.archive_name(schema, t)
  local suffix = "_archived_" .. os.date("!%Y%m%d", t)
  return schema:sub(1, 63 - #suffix) .. suffix
end

local one = tenant_db.one

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

local function in_transaction(db, fn)
  local a, b, c
  local ok, err = db:transaction(function()
    a, b, c = fn()
    if a == nil then return nil, b end
    return true
  end)
  if not ok then return nil, err end
  return a, b, c
end

local function rename(tdb, from, to)
  local ok, err = tdb:exec("ALTER SCHEMA " .. pg.quote_ident(from) .. " RENAME TO " .. pg.quote_ident(to))
  if not ok then return nil, "renaming schema " .. from .. ": " .. err end
  return true
end

-- settle(tdb, from, to) -> true once `to` exists and `from` does not: renames
-- when only `from` is there; a second run finds it done.
local function settle(tdb, from, to)
  local has_from, err = exists(tdb, from)
  if has_from == nil then return nil, err end
  local has_to, terr = exists(tdb, to)
  if has_to == nil then return nil, terr end
  if has_from and has_to then return nil, "both schema " .. from .. " and " .. to .. " exist" end
  if has_from then return rename(tdb, from, to) end
  return true -- renamed already (or never made: a tenant whose sync made no table)
end

-- The record, made (or found) under the org's lock -> archive, tenant db | false | nil, err
local function record_archive(db, org_id)
  local org, err = locked(db, org_id, "offboarded")
  if not org then return org, err end
  local tdb, terr = tenant_db.tenant(org)
  if not tdb then return nil, terr end
  local kept, lerr = _M.live(db, org_id)
  if kept ~= false then return kept, lerr or tdb end
  local there, eerr = exists(tdb, org.schema_name)
  if not there then return there, eerr end
  local row, ierr = one(db:query([[INSERT INTO tenant_archives (org_id, schema_name, archive_name, drop_after)
    VALUES ($1, $2, $3, now() + make_interval(days => $4)) RETURNING *]],
    org_id, org.schema_name, _M.archive_name(org.schema_name, os.time()), config.get("ARCHIVE_DAYS")))
  if not row then return nil, ierr end
  return row, tdb
end

function _M.archive(db, org_id)
  local a, tdb = in_transaction(db, function() return record_archive(db, org_id) end)
  if not a then return a, tdb end
  local ok, err = settle(tdb, a.schema_name, a.archive_name)
  if not ok then return nil, err end
  return a
end

local function find_restorable(db, org_id)
  local org, err = locked(db, org_id, "received")
  if not org then return org, err end
  local kept, lerr = one(db:query([[SELECT * FROM tenant_archives WHERE org_id = $1
    AND restored_at IS NULL AND dropped_at IS NULL AND drop_after > now()]], org_id))
  if not kept then return kept, lerr end
  local tdb, terr = tenant_db.tenant(org)
  if not tdb then return nil, terr end
  return kept, tdb
end

-- The schema back first, then the record says so: a crash between is finished
-- by the next run (the rename found done).
function _M.restore(db, org_id)
  local a, tdb = in_transaction(db, function() return find_restorable(db, org_id) end)
  if not a then return a, tdb end
  local ok, err = settle(tdb, a.archive_name, a.schema_name)
  if not ok then return nil, err end
  return one(db:query("UPDATE tenant_archives SET restored_at = now() WHERE id = $1 RETURNING *", a.id))
end

-- One archive past its retention: dropped, then marked (a second run drops
-- nothing and marks it).
local function drop(db, a)
  local tdb, terr = tenant_db.tenant(a)
  if not tdb then return nil, terr end
  local ok, err = tdb:exec("DROP SCHEMA IF EXISTS " .. pg.quote_ident(a.archive_name) .. " CASCADE")
  if not ok then return nil, err end
  return one(db:query(
    "UPDATE tenant_archives SET dropped_at = now() WHERE id = $1 AND dropped_at IS NULL RETURNING *", a.id))
end

function _M.prune(db)
  local due, err = db:query([[SELECT a.*, o.db_key FROM tenant_archives a JOIN organizations o USING (org_id)
    WHERE a.drop_after <= now() AND a.restored_at IS NULL AND a.dropped_at IS NULL ORDER BY a.id]])
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
