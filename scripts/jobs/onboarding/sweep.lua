-- jobs.onboarding.sweep: wakes orgs whose step is overdue — the next advance was
-- lost (a process died between committing a step and enqueueing the next one,
-- or Redis lost the job). Scheduled every minute (scripts/schedule.lua); waking
-- an org twice is harmless, as advance skips a row another runner holds or
-- whose step is not due.
local config = require "config"
local db = require "lib.db"
local workflow = require "onboarding.workflow"

local _M = {}

function _M.perform(_, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  local grace = config.get("ONBOARDING_SWEEP_GRACE")
  local rows, qerr = conn:query([[SELECT org_id FROM organizations
    WHERE next_attempt_at < now() - make_interval(secs => $1)
      AND state NOT IN ('active', 'degraded', 'failed', 'offboarded', 'awaiting_app_oauth', 'awaiting_connect_oauth')
    ORDER BY next_attempt_at LIMIT 1000]], grace)
  if not rows then return nil, qerr end
  for _, row in ipairs(rows) do
    local ok, eerr = workflow.enqueue(row.org_id)
    if not ok then return nil, eerr end
  end
  if #rows > 0 then ctx.log.warn("onboarding sweep woke overdue orgs", { count = #rows }) end
  return true
end

return _M
