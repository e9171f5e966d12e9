-- jobs.onboarding.advance(org_id): run the org's current onboarding step
-- (onboarding/workflow.lua). A database or Redis failure fails the job, and the
-- worker retries it with backoff; a step's own failures are settled on the org.
-- The workflow is loaded here, not at the top: when its code does not load (an
-- edit with a syntax error), the error is written on the org's row too, where
-- the operator looks (GET /organizations/:id, the console), not only in the
-- worker's log.
local db = require "lib.db"

local _M = {}

-- Best effort: the orgs module itself may be the one that does not load.
local function tell_the_org(org_id, err)
  local ok, orgs = pcall(require, "onboarding.orgs")
  local conn = ok and db.conn()
  if not conn then return end
  orgs.update(conn, org_id, { last_error = "the onboarding code does not load: " .. err })
end

function _M.perform(args, ctx)
  local org_id = args[1]
  if type(org_id) ~= "string" then return nil, "onboarding.advance: expected an org id" end
  local loaded, workflow = pcall(require, "onboarding.workflow")
  if not loaded then
    local err = tostring(workflow):match("^[^\n]*")
    tell_the_org(org_id, err)
    return nil, err -- retried with backoff: a fixed file makes the next try work
  end
  local result, err = workflow.advance(org_id)
  if not result then return nil, err end
  ctx.log.debug("onboarding advanced", { org_id = org_id, result = result })
  return true
end

return _M
