-- watch.judge: what one reading of a connection (GET /connections/{id}?deep=true)
-- says about a tenant's sync. Pure: no I/O, so every verdict is unit-tested.
--   judge.read(conn, now, stale_after) -> {
--     connection_state, last_sync (epoch seconds | nil), mappings = {{object_name,
--     state, state_description, counts}...}, problems = {{kind, text}...} }
-- A problem's kind says who can fix it:
--   authorization  Connect lost its Salesforce authorization: the org's admin
--                  authorizes again (a fresh authorize link)
--   paused         the connection is paused or iced: the operator resumes it
--   connection     Connect reports an error of the connection
--   mapping        a mapping is in an error state (a field or object gone, ...)
--   stale          no mapping reported sync activity for stale_after seconds
-- No problems: the sync is healthy (or busy getting there).
local connect = require "clients.connect"
local days = require("lib.civil").days

local _M = {}

-- epoch(iso8601) -> seconds | nil: "2026-12-06T22:49:03Z", with an optional
-- fraction and a Z or +hh:mm offset, as Connect writes its times.
function _M.epoch(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  rest = rest:gsub("^%.%d+", "")
  local offset = 0
  if rest ~= "Z" and rest ~= "" then
    local sign, oh, om = rest:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  local t = days(tonumber(y), tonumber(mo), tonumber(d)) * 86400
    + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  return t - offset
end

-- The newest activity a mapping reports (its poll and write times) -> epoch | nil
local function newest(m)
  local best
  for _, v in pairs(type(m.times) == "table" and m.times or {}) do
    local t = _M.epoch(v)
    if t and (not best or t > best) then best = t end
  end
  return best
end

local function connection_problem(state)
  if connect.UNAUTHORIZED_CONNECTION[state] then
    return { kind = "authorization",
      text = "Heroku Connect needs the org's Salesforce authorization again (" .. state .. ")" }
  elseif connect.PAUSED_CONNECTION[state] then
    return { kind = "paused", text = "the connection is " .. state }
  elseif connect.BROKEN_CONNECTION[state] then
    return { kind = "connection", text = "the connection is in error: " .. state }
  end
end

local function mapping_problem(m)
  if not connect.BROKEN_MAPPING[m.state] then return nil end
  local described = type(m.state_description) == "string" and m.state_description ~= "OK"
  local why = described and (": " .. m.state_description) or ""
  return { kind = "mapping", text = string.format("mapping %s is %s%s", tostring(m.object_name), m.state, why) }
end

local function seen_mapping(m)
  return { object_name = m.object_name, state = m.state,
    state_description = type(m.state_description) == "string" and m.state_description or nil,
    counts = type(m.counts) == "table" and m.counts or nil }
end

function _M.read(conn, now, stale_after)
  local seen = { connection_state = tostring(conn.state), mappings = {}, problems = {} }
  local problem = connection_problem(conn.state)
  if problem then seen.problems[1] = problem end
  for _, m in ipairs(type(conn.mappings) == "table" and conn.mappings or {}) do
    seen.mappings[#seen.mappings + 1] = seen_mapping(m)
    seen.problems[#seen.problems + 1] = mapping_problem(m)
    local t = newest(m)
    if t and (not seen.last_sync or t > seen.last_sync) then seen.last_sync = t end
  end
  -- only a sync that is otherwise fine is judged stale: a paused one is already said
  if #seen.problems == 0 and seen.last_sync and now - seen.last_sync > stale_after then
    seen.problems[1] = { kind = "stale", text = string.format(
      "no sync activity for %d minutes (HEALTH_STALE_AFTER is %d)", (now - seen.last_sync) // 60, stale_after) }
  end
  return seen
end

return _M
