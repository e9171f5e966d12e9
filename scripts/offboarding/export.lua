-- `multiconnect run offboarding.export ORG_ID [FILE]`: writes an offboarded
-- tenant's archived schema to FILE (default <archive name>.sql) with pg_dump
-- (Debian's postgresql-client; on Heroku, a one-off dyno of the image) from the
-- tenant's database (its db_key), before
-- archives.prune drops it. Restore it elsewhere with `psql -f FILE`: the
-- archive's name is kept, so it lands beside whatever that database holds.
local config = require "config"
local db = require "lib.db"
local sfid = require "lib.sfid"
local archives = require "offboarding.archives"
local orgs = require "onboarding.orgs"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local org_id, why = sfid.org_id((...) or "")
if not org_id then
  return nil, "usage: multiconnect run offboarding.export ORG_ID [FILE] (the org id " .. tostring(why) .. ")"
end
local conn, err = db.conn()
if not conn then return nil, err end
local archive, aerr = archives.live(conn, org_id)
if archive == nil then return nil, aerr end
if not archive then return nil, "org " .. org_id .. " has no archived schema (not offboarded, restored, or dropped)" end
local file = select(2, ...) or (archive.archive_name .. ".sql")
local org, oerr = orgs.get(conn, org_id)
if not org then return nil, oerr or "no such org" end
local url, uerr = config.database_url(db.key(org)) -- the tenant's database, where the archive is
if not url then return nil, uerr end
local argv = archives.export_command(archive, file, url)
for i, a in ipairs(argv) do argv[i] = quote(a) end
local ok = os.execute(table.concat(argv, " "))
if not ok then return nil, "pg_dump failed (is postgresql-client installed?)" end
io.stdout:write(string.format("exported %s (org %s, kept until %s) to %s\n", archive.archive_name, org_id,
  tostring(archive.drop_after), file))
return 0
