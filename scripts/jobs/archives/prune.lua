-- jobs.archives.prune: drops the archived schemas of offboarded tenants whose
-- retention (ARCHIVE_DAYS) has passed (offboarding/archives.lua). Hourly, from
-- scripts/schedule.lua; each drop and its record are one transaction, so a
-- run that dies part way leaves the rest for the next.
local db = require "lib.db"
local archives = require "offboarding.archives"

local _M = {}

function _M.perform(_, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  local dropped, perr = archives.prune(conn)
  if not dropped then return nil, perr end
  for _, a in ipairs(dropped) do
    ctx.log.info("archived schema dropped",
      { org_id = a.org_id, archive = a.archive_name, archived_at = a.archived_at })
  end
  return true
end

return _M
