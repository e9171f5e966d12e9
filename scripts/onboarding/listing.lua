-- onboarding.listing: the tenants, a page at a time, for GET /organizations and
-- the dashboard's tenants table (one reading of the parameters for both).
--   local q, param, why = listing.parse(req.query)   -- nil, "limit", "must be ..." on bad input
--   local page, err = listing.page(conn, q, key)     -- {items, next_cursor, limit}
-- Parameters: state (one or more, comma-separated or repeated), environment,
-- q (a name containing it, or an org id starting with it), sort (a column,
-- `-` first for descending; default -updated_at), limit (1..200, default 50),
-- cursor (the next_cursor of the previous page, with the same filters and sort).
local json = require "mc.json"
local cursor = require "lib.cursor"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"

local _M = {}

_M.DEFAULT_LIMIT = 50
_M.MAX_LIMIT = 200
_M.DEFAULT_SORT = "-updated_at"
local ENVIRONMENTS = { production = true, sandbox = true, custom = true }
local KNOWN = { state = true, environment = true, q = true, sort = true, limit = true, cursor = true }

-- A query value as one string: a repeated key (an array) joined with commas.
local function one(v)
  if type(v) == "table" then return table.concat(v, ",") end
  return v
end

local function parse_states(v)
  local list = {}
  for s in one(v):gmatch("[^,%s]+") do
    if not states.known(s) then return nil, "unknown state '" .. s .. "'" end
    list[#list + 1] = s
  end
  if #list == 0 then return nil, "must name at least one state" end
  table.sort(list)
  return list
end

local function parse_sort(v)
  local desc, col = one(v):match("^(%-?)([%w_]+)$")
  if not col or not orgs.SORTABLE[col] then
    local cols = {}
    for c in pairs(orgs.SORTABLE) do cols[#cols + 1] = c end
    table.sort(cols)
    return nil, "must be one of " .. table.concat(cols, ", ") .. " (a leading - sorts descending)"
  end
  return col, desc == "-"
end

local function parse_limit(v)
  local n = math.tointeger(tonumber(one(v)))
  if not n or n < 1 or n > _M.MAX_LIMIT then return nil, "must be an integer from 1 to " .. _M.MAX_LIMIT end
  return n
end

-- The listing a cursor belongs to: its filters and sort, in one canonical string.
local function scope(q)
  return table.concat({ q.sort, q.desc and "desc" or "asc", table.concat(q.states or {}, ","),
    q.environment or "", q.search or "" }, "\n")
end

-- parse(query) -> q | nil, param, why
function _M.parse(query)
  for k in pairs(query) do
    if not KNOWN[k] then return nil, k, "unknown parameter (known: cursor, environment, limit, q, sort, state)" end
  end
  local q, err = { limit = _M.DEFAULT_LIMIT }
  if query.state and one(query.state) ~= "" then
    q.states, err = parse_states(query.state)
    if not q.states then return nil, "state", err end
  end
  if query.environment and one(query.environment) ~= "" then
    q.environment = one(query.environment)
    if not ENVIRONMENTS[q.environment] then return nil, "environment", "must be production, sandbox or custom" end
  end
  if query.q and one(query.q) ~= "" then
    q.search = one(query.q)
    if #q.search > 100 then return nil, "q", "must be at most 100 characters" end
  end
  q.sort, q.desc = parse_sort(query.sort or _M.DEFAULT_SORT)
  if not q.sort then return nil, "sort", q.desc end
  if query.limit then
    q.limit, err = parse_limit(query.limit)
    if not q.limit then return nil, "limit", err end
  end
  if query.cursor and one(query.cursor) ~= "" then q.cursor = one(query.cursor) end
  return q
end

-- item(row) -> what a listing shows of an org
function _M.item(row)
  return {
    org_id = row.org_id, org_name = row.org_name, environment = row.environment, state = row.state,
    state_since = row.state_since, step_age = math.floor(row.in_state), failed_step = row.failed_step,
    last_error = row.last_error, next_action = states.next_action(row.state), attempts = row.attempts,
    next_attempt_at = row.next_attempt_at, created_at = row.created_at, updated_at = row.updated_at,
  }
end

-- page(conn, q, key) -> {items, next_cursor (mc.null on the last page), limit}
-- | nil, err | false, "cursor", why (a cursor this listing did not give)
function _M.page(conn, q, key)
  if q.cursor then
    local pos, why = cursor.decode(key, q.cursor, scope(q))
    if not pos or type(pos[1]) ~= "string" or type(pos[2]) ~= "string" then
      return false, "cursor", why or "is malformed"
    end
    q.after = pos
  end
  local rows, err = orgs.list(conn, { states = q.states, environment = q.environment, search = q.search,
    sort = q.sort, desc = q.desc, after = q.after, limit = q.limit + 1 })
  if not rows then return nil, err end
  local items = {}
  for i = 1, math.min(#rows, q.limit) do items[i] = _M.item(rows[i]) end
  local next_cursor = mc.null
  if #rows > q.limit then
    local last = rows[q.limit]
    next_cursor = cursor.encode(key, { last.sort_key, last.org_id }, scope(q))
  end
  return { items = json.array(items), next_cursor = next_cursor, limit = q.limit }
end

return _M
