-- jobs.alerts.mail(org_id, kind, to): one alert mail of a degraded or failed
-- org (watch/alerts.lua), to its admin or to the operator. A mail that fails
-- is retried by the worker; one asked to wait (Retry-After) is queued again
-- after that wait. An org that left the state meanwhile gets nothing.
local jobs = require "mc.jobs"
local db = require "lib.db"
local api = require "lib.api"
local alerts = require "watch.alerts"

local _M = {}

function _M.perform(args, ctx)
  local org_id, kind, to = args[1], args[2], args[3]
  if type(org_id) ~= "string" or (kind ~= "degraded" and kind ~= "failed")
      or (to ~= "admin" and to ~= "operator") then
    return nil, "alerts.mail: expected [org_id, degraded|failed, admin|operator]"
  end
  local conn, err = db.conn()
  if not conn then return nil, err end
  local sent, serr, retry = alerts.send(conn, org_id, kind, to)
  if not sent then
    local wait = api.wait_of(retry)
    if not wait then return nil, serr end
    local jid, jerr = jobs.enqueue("alerts.mail", args, { ["in"] = wait })
    if not jid then return nil, jerr end
  end
  ctx.log.info("alert mail", { org_id = org_id, kind = kind, to = to, result = sent or ("retry: " .. serr) })
  return true
end

return _M
