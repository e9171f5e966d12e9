-- jobs.health.watch: the clock's entry (scripts/schedule.lua, every
-- HEALTH_INTERVAL seconds): one health.check job per onboarded org, spread
-- evenly over the interval so that N orgs do not hit the Connect API in the
-- same second. An org checked twice (a slow worker, two clocks' ticks) is only
-- read twice.
local config = require "config"
local jobs = require "mc.jobs"
local db = require "lib.db"

local _M = {}

-- The onboarded orgs, in a stable order so each keeps its place in the interval.
local ONBOARDED = [[SELECT org_id FROM organizations
  WHERE state IN ('active', 'degraded') AND connection_id IS NOT NULL ORDER BY id]]

function _M.perform(_, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  local rows, qerr = conn:query(ONBOARDED)
  if not rows then return nil, qerr end
  local interval = config.get("HEALTH_INTERVAL")
  local step = #rows > 0 and interval / #rows or 0
  for i, row in ipairs(rows) do
    local delay = (i - 1) * step
    local jid, jerr = jobs.enqueue("health.check", { row.org_id }, delay > 0 and { ["in"] = delay } or nil)
    if not jid then return nil, jerr end
  end
  ctx.log.info("health checks queued", { orgs = #rows, over_seconds = interval })
  return true
end

return _M
