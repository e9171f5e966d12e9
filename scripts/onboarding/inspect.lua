-- onboarding.inspect: what an operator's page shows of one org beyond its row,
-- read only: its Heroku Connect connection as Connect reports it now (else
-- what onboarding last recorded of it), and the row counts of its schema's
-- tables. Nothing here moves an org.
--   inspect.connection(conn, org) -> {live = true, state, mappings = {{object_name, state}}}
--                                  | {live = false, why, recorded = text|nil}
--   inspect.tables(conn, org)      -> {{name, rows}...} | nil, err
local config = require "config"
local pg = require "mc.pg"
local connect = require "clients.connect"

local _M = {}

_M.CONNECT_TIMEOUT = 3 -- seconds a page waits on Connect
_M.COUNT_TIMEOUT = "2s" -- per table count: a huge table shows as uncounted, not a slow page

-- The last thing onboarding wrote down about the sync (a wait's reason, say).
local function recorded(conn, org_id)
  local rows = conn:query([[SELECT details->>'reason' AS reason, details->>'error' AS error, created_at
    FROM onboarding_events WHERE org_id = $1 AND (details ? 'reason' OR details ? 'error')
    ORDER BY id DESC LIMIT 1]], org_id)
  local r = rows and rows[1]
  if not r then return nil end
  local what = r.reason ~= mc.null and r.reason or r.error
  return tostring(what) .. " (recorded " .. tostring(r.created_at) .. ")"
end

function _M.connection(conn, org)
  if org.connection_id == mc.null or org.region_url == mc.null then
    return { live = false, why = "no Heroku Connect connection yet" }
  end
  if not config.get("HEROKU_API_TOKEN") then
    return { live = false, why = "HEROKU_API_TOKEN is not set in the web process",
      recorded = recorded(conn, org.org_id) }
  end
  local doc, err = connect.get(org.region_url, org.connection_id, true, _M.CONNECT_TIMEOUT)
  if not doc then return { live = false, why = err, recorded = recorded(conn, org.org_id) } end
  local mappings = {}
  for i, m in ipairs(type(doc.mappings) == "table" and doc.mappings or {}) do
    mappings[i] = { object_name = tostring(m.object_name), state = tostring(m.state) }
  end
  return { live = true, state = tostring(doc.state), mappings = mappings }
end

-- Counts one table's rows under a statement timeout -> n | false (too slow) |
-- nil, err. The timeout is set for the count alone and reset after it (RESET
-- returns to the connection's own setting).
local function count(conn, schema, name)
  local ok, err = conn:exec("SET statement_timeout = '" .. _M.COUNT_TIMEOUT .. "'")
  if not ok then return nil, err end
  local rows, cerr, sqlstate = conn:query("SELECT count(*)::bigint AS n FROM "
    .. pg.quote_ident(schema) .. "." .. pg.quote_ident(name))
  conn:exec("RESET statement_timeout")
  if not rows then
    if sqlstate == "57014" then return false end
    return nil, cerr
  end
  return rows[1].n
end

function _M.tables(conn, org)
  if org.schema_name == mc.null then return {} end
  local names, err = conn:query([[SELECT table_name FROM information_schema.tables
    WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name]], org.schema_name)
  if not names then return nil, err end
  local out = {}
  for i, t in ipairs(names) do
    local n, cerr = count(conn, org.schema_name, t.table_name)
    if n == nil then return nil, cerr end
    out[i] = { name = t.table_name, rows = n }
  end
  return out
end

return _M
