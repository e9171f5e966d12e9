-- jobs.onboarding.advance(org_id): run the org's current onboarding step
-- (onboarding/workflow.lua). A database or Redis failure fails the job, and the
-- worker retries it with backoff; a step's own failures are settled on the org.
local workflow = require "onboarding.workflow"

local _M = {}

function _M.perform(args, ctx)
  local org_id = args[1]
  if type(org_id) ~= "string" then return nil, "onboarding.advance: expected an org id" end
  local result, err = workflow.advance(org_id)
  if not result then return nil, err end
  ctx.log.debug("onboarding advanced", { org_id = org_id, result = result })
  return true
end

return _M
