-- jobs.onboarding.offboard(org_id): after an uninstall, removes the org's Heroku
-- Connect add-on (which stops the sync). The tenant's schema and its data stay:
-- dropping an ISV customer's data is an operator's decision, not a callback's.
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local heroku = require "clients.heroku"

local _M = {}

function _M.perform(args, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  local org, gerr = orgs.get(conn, args[1])
  if org == nil then return nil, gerr end
  if not org or org.state ~= "offboarded" then return true end -- reinstalled meanwhile, or gone
  if org.addon_name == mc.null then return true end
  local ok, derr = heroku.delete_addon(org.addon_name)
  if not ok then return nil, derr end -- the worker retries with backoff
  assert(orgs.event(conn, org.org_id, "offboarded", "offboarded", "transition", { addon_deleted = org.addon_name }))
  ctx.log.info("offboarded: add-on deleted", { org_id = org.org_id, addon = org.addon_name })
  return true
end

return _M
