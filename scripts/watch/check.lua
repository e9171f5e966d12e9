-- watch.check: one visit of one onboarded org (the health.check job):
--   1. read its connection with the mappings (GET /connections/{id}?deep=true);
--   2. record what it saw (sync_health), judged by watch.judge;
--   3. move it: active -> degraded when there is a problem, degraded -> active
--      once there is none (orgs.transition, mover "step");
--   4. entering degraded: a level=error log line and the two alert mails, once
--      per episode. The alerts are queued after the move commits and marked in
--      sync_health; a visit that finds a degraded org not yet alerted (a crash
--      in between) queues them then.
-- A read that fails (Connect down, a 429) records the error and judges nothing:
-- a hiccup of Connect's API is not a broken sync.
--   check.visit(conn, org_id) -> verdict, detail | nil, err, retryable
-- verdicts: "healthy", "degraded" (entered now), "still degraded", "healed",
-- "skipped" (not onboarded, or gone), "unreadable" (detail: the error; the third
-- value: api's retryable, seconds when the service named a Retry-After).
local config = require "config"
local log = require "mc.log"
local connect = require "clients.connect"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local workflow = require "onboarding.workflow"
local judge = require "watch.judge"
local record = require "watch.record"
local alerts = require "watch.alerts"

local _M = {}

local function kinds(problems)
  local out = {}
  for _, p in ipairs(problems) do out[#out + 1] = p.kind end
  return table.concat(out, ",")
end

-- The move and the episode's start or end, in one transaction.
local function move(conn, org, to, seen)
  local row, err
  local ok, terr = conn:transaction(function()
    row, err = orgs.transition(conn, org.org_id, to, "step", { from = org.state,
      details = { health = to == "degraded" and seen.problems or "healed" } })
    if not row then return row == nil and nil or true, err end
    local ep, eerr = record.episode(conn, org.org_id, to == "degraded")
    if not ep then return nil, eerr end
    return true
  end)
  if not ok then return nil, terr end
  if row then workflow.announce(row, row.from_state, row.state) end
  return row
end

local function alert(conn, org, seen)
  log.error("tenant degraded", { org_id = org.org_id, org_name = org.org_name, problems = kinds(seen.problems),
    detail = seen.problems[1] and seen.problems[1].text })
  local ok, err = alerts.queue(org.org_id, "degraded")
  if not ok then return nil, err end
  return record.alerted(conn, org.org_id)
end

local function settle(conn, org, seen, row)
  local broken = #seen.problems > 0
  if broken and org.state == "active" then
    local moved, err = move(conn, org, "degraded", seen)
    if not moved then return moved, err or "org moved on" end
    local ok, aerr = alert(conn, org, seen)
    if not ok then return nil, aerr end
    return "degraded", kinds(seen.problems)
  elseif broken then
    if row.alerted_at == mc.null then
      local ok, aerr = alert(conn, org, seen)
      if not ok then return nil, aerr end
    end
    return "still degraded", kinds(seen.problems)
  elseif org.state == "degraded" then
    local moved, err = move(conn, org, "active", seen)
    if not moved then return moved, err or "org moved on" end
    log.info("tenant healed", { org_id = org.org_id })
    return "healed"
  end
  return "healthy"
end

function _M.visit(conn, org_id)
  local org, err = orgs.get(conn, org_id)
  if org == nil then return nil, err, true end
  if not org or not states.ONBOARDED[org.state] or org.connection_id == mc.null then return "skipped" end
  local doc, rerr, retry = connect.get(org.region_url, org.connection_id, true)
  if not doc then
    log.warn("health check could not read the connection", { org_id = org_id, err = rerr })
    local ok, uerr = record.unreadable(conn, org_id, rerr)
    if not ok then return nil, uerr, true end
    return "unreadable", rerr, retry
  end
  local seen = judge.read(doc, os.time(), config.get("HEALTH_STALE_AFTER"))
  local row, serr = record.saw(conn, org_id, seen)
  if not row then return nil, serr, true end
  local verdict, detail = settle(conn, org, seen, row)
  if verdict == nil then return nil, detail, true end
  if verdict == false then return "skipped", detail end -- it moved meanwhile (an uninstall)
  return verdict, detail
end

return _M
