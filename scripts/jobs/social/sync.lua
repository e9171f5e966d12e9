-- jobs.social.sync: the scheduled fan-out (scripts/schedule.lua, every 10
-- minutes; `multiconnect run jobs:social.sync` from Heroku Scheduler): one
-- social.tenant job per active tenant, so tenants run in parallel across the
-- workers and one slow or rate-limited tenant holds up nobody else.
local jobs = require "mc.jobs"
local db = require "lib.db"

local _M = {}

function _M.perform(_, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  local rows, qerr = conn:query([[SELECT org_id FROM organizations
    WHERE state IN ('active', 'degraded') AND schema_name IS NOT NULL ORDER BY org_id]])
  if not rows then return nil, qerr end
  for _, row in ipairs(rows) do
    local jid, eerr = jobs.enqueue("social.tenant", { row.org_id }, { retry = 5 })
    if not jid then return nil, eerr end
  end
  ctx.log.info("social sync fanned out", { tenants = #rows })
  return true
end

return _M
