-- jobs.onboarding.offboard(org_id): after an uninstall or an operator's
-- offboard, lets the tenant go and keeps its data:
--   1. pauses its connection (actions/pause): nothing more syncs;
--   2. removes its Heroku Connect add-on;
--   3. archives its schema (offboarding/archives.lua): renamed to
--      <schema>_archived_<date>, tables and rows kept for ARCHIVE_DAYS, then
--      dropped by archives.prune; a reinstall before then restores it.
-- Each step finds its own earlier work (a paused connection, a 404 for the
-- add-on, the archive already recorded), so a crash anywhere is completed by
-- the worker's retry. Dropping an ISV customer's data is never a callback's
-- decision: only the retention does it.
local config = require "config"
local jobs = require "mc.jobs"
local log = require "mc.log"
local db = require "lib.db"
local api = require "lib.api"
local orgs = require "onboarding.orgs"
local heroku = require "clients.heroku"
local connect = require "clients.connect"
local operations = require "onboarding.operations"
local workflow = require "onboarding.workflow"
local archives = require "offboarding.archives"

local _M = {}

local function known(v) return v ~= nil and v ~= mc.null end

-- A pause Connect refuses for good (the connection half made, a token it no
-- longer takes) must not keep the add-on alive: removing it stops the sync too.
local function pause(org)
  if not (known(org.connection_id) and known(org.region_url)) then return false end
  local ok, err, retry = connect.pause(org.region_url, org.connection_id)
  if ok then return true end
  if retry then return nil, err, retry end
  log.warn("offboarding: the connection could not be paused; removing the add-on stops it",
    { org_id = org.org_id, err = err })
  return false
end

-- pause, then delete, with the org's claim held -> details | nil, err, retryable
local function let_go(conn, org)
  local name = known(org.addon_name) and org.addon_name or heroku.addon_name(org.org_id)
  -- a step still running may be creating the add-on: wait for it to end (its
  -- outcome is dropped, the org having moved on), so nothing is left behind
  local got, cerr = workflow.claim(conn, org, math.floor(config.get("OFFBOARD_STEP_WAIT") * 1000))
  if not got then return nil, cerr or "a step of this org is still running" end
  local ran, paused, perr, pretry = pcall(pause, org)
  local raised = not ran and paused
  local deleted, derr, dretry
  if ran and paused ~= nil then
    ran, deleted, derr, dretry = pcall(heroku.delete_addon, name)
    raised = not ran and deleted
  end
  workflow.release(conn, org)
  if raised then error(raised, 0) end
  if paused == nil then return nil, perr, pretry end
  if not deleted then return nil, derr, dretry end
  return { addon_deleted = name, paused = paused or nil }
end

-- A failure the service asked us to wait out is queued again after that wait.
local function later(args, err, retry)
  local wait = api.wait_of(retry)
  if not wait then return nil, err end
  local jid, jerr = jobs.enqueue("onboarding.offboard", args, { ["in"] = wait })
  if not jid then return nil, jerr end
  return true
end

-- args: { org_id [, "transition"] }: with "transition", the uninstall callback
-- found the row busy and left the state change to this job (which waits for it).
function _M.perform(args, ctx)
  local conn, err = db.conn()
  if not conn then return nil, err end
  if args[2] == "transition" then
    local org, oerr = operations.offboard(conn, args[1], { uninstall = true, deferred = true })
    if org == nil then return nil, oerr end -- the worker retries with backoff
    return true -- no such org, or offboard() queued the plain job that does the rest
  end
  local org, gerr = orgs.get(conn, args[1])
  if org == nil then return nil, gerr end
  if not org or org.state ~= "offboarded" then return true end -- reinstalled meanwhile, or gone
  local details, lerr, retry = let_go(conn, org)
  if not details then return later(args, lerr, retry) end
  local archive, aerr = archives.archive(conn, org.org_id)
  if archive == nil then return nil, "archiving the schema: " .. aerr end
  if archive then details.archived = archive.archive_name; details.drop_after = archive.drop_after end
  local noted, nerr = orgs.note(conn, org, "transition", details)
  if not noted then return nil, nerr end
  ctx.log.info("offboarded", { org_id = org.org_id, addon = details.addon_deleted, paused = details.paused,
    archived = details.archived })
  return true
end

return _M
