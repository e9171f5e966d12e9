-- jobs.onboarding.offboard(org_id): after an uninstall, removes the org's Heroku
-- Connect add-on (which stops the sync). The tenant's schema and its data stay:
-- dropping an ISV customer's data is an operator's decision, not a callback's.
local config = require "config"
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local heroku = require "clients.heroku"
local operations = require "onboarding.operations"
local workflow = require "onboarding.workflow"

local _M = {}


-- args: { org_id [, "transition"] }: with "transition", the uninstall callback
-- found the row busy and left the state change to this job (which waits for it).
function _M.perform(args, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  if args[2] == "transition" then
    local org, oerr = operations.offboard(conn, args[1], { uninstall = true, deferred = true })
    if org == nil then return nil, oerr end -- the worker retries with backoff
    if not org then return true end -- no such org
    return true -- offboard() enqueued the plain job that deletes the add-on
  end
  local org, gerr = orgs.get(conn, args[1])
  if org == nil then return nil, gerr end
  if not org or org.state ~= "offboarded" then return true end -- reinstalled meanwhile, or gone
  -- by name, derived from the org: a step that created the add-on may have died
  -- before recording it
  local name = org.addon_name ~= mc.null and org.addon_name or heroku.addon_name(org.org_id)
  -- a step still running may be creating the add-on: wait for it to end (its
  -- outcome is dropped, the org having moved on), so nothing is left behind
  local got, cerr = workflow.claim(conn, org, math.floor(config.get("OFFBOARD_STEP_WAIT") * 1000))
  if not got then return nil, cerr or "a step of this org is still running" end -- retried with backoff
  local ran, deleted, derr = pcall(heroku.delete_addon, name)
  workflow.release(conn, org)
  if not ran then error(deleted, 0) end
  if not deleted then return nil, derr end -- the worker retries with backoff
  local noted, nerr = orgs.note(conn, org, "transition", { addon_deleted = name })
  if not noted then return nil, nerr end
  ctx.log.info("offboarded: add-on deleted", { org_id = org.org_id, addon = name })
  return true
end

return _M
