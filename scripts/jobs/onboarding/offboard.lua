-- jobs.onboarding.offboard(org_id): after an uninstall, removes the org's Heroku
-- Connect add-on (which stops the sync). The tenant's schema and its data stay:
-- dropping an ISV customer's data is an operator's decision, not a callback's.
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local heroku = require "clients.heroku"
local steps = require "onboarding.steps"
local operations = require "onboarding.operations"

local _M = {}

-- args: { org_id [, "transition"] }: with "transition", the uninstall callback
-- found the row busy and left the state change to this job (which waits for it).
function _M.perform(args, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  if args[2] == "transition" then
    local org, oerr = operations.offboard(conn, args[1], { uninstall = true, deferred = true })
    if not org then return oerr == "no such org" or nil, oerr end
    return true -- offboard() enqueued the plain job that deletes the add-on
  end
  local org, gerr = orgs.get(conn, args[1])
  if org == nil then return nil, gerr end
  if not org or org.state ~= "offboarded" then return true end -- reinstalled meanwhile, or gone
  -- by name, derived from the org: a step that created the add-on may have died
  -- before recording it
  local name = org.addon_name ~= mc.null and org.addon_name or steps.addon_name(org)
  local ok, derr = heroku.delete_addon(name)
  if not ok then return nil, derr end -- the worker retries with backoff
  assert(orgs.event(conn, org.org_id, "offboarded", "offboarded", "transition", { addon_deleted = name }))
  ctx.log.info("offboarded: add-on deleted", { org_id = org.org_id, addon = name })
  return true
end

return _M
