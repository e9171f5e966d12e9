-- jobs.health.check(org_id): one visit of one onboarded org (watch/check.lua).
-- A database failure fails the job (the worker retries it). A connection that
-- could not be read waits for the next visit, or, when Connect named a
-- Retry-After shorter than the interval, is read again once it has passed:
-- never sooner, and never in a loop.
local config = require "config"
local jobs = require "mc.jobs"
local db = require "lib.db"
local api = require "lib.api"
local check = require "watch.check"

local _M = {}

function _M.perform(args, ctx)
  local org_id = args[1]
  if type(org_id) ~= "string" then return nil, "health.check: expected an org id" end
  local conn, err = db.conn()
  if not conn then return nil, err end
  local verdict, detail, retry = check.visit(conn, org_id)
  if not verdict then return nil, detail end
  local wait = verdict == "unreadable" and api.wait_of(retry)
  if wait and wait < config.get("HEALTH_INTERVAL") then
    local jid, jerr = jobs.enqueue("health.check", { org_id }, { ["in"] = math.max(wait, 1) })
    if not jid then return nil, jerr end
  end
  ctx.log.info("health checked", { org_id = org_id, verdict = verdict, detail = detail, retry_in = wait or nil })
  return true
end

return _M
