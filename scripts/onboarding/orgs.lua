-- onboarding.orgs: the organizations table and its event log (sql/001), and the
-- one owner of an org's state: transition() is the only code that writes the
-- state column, checking each move against onboarding.states' MOVES. Every
-- function takes the connection to use, so a caller inside a transaction
-- passes its own; rows come back as column-keyed tables. Runtime failures come
-- back as nil, err; false is an answer ("no such org", "not in that state").
local json = require "mc.json"
local states = require "onboarding.states"
local tenant = require "lib.tenant"

local _M = {}

-- get(db, org_id[, lock]) -> row | false | nil, err[, sqlstate]. lock = "update":
-- FOR UPDATE (inside the caller's transaction).
-- Two computed columns come along: `early` (the step is not due for another
-- second or more) and `in_state` (seconds since the org entered its state).
function _M.get(db, org_id, lock)
  local sql = [[SELECT *, coalesce(next_attempt_at > now() + interval '1 second', false) AS early,
    extract(epoch FROM now() - state_since)::float8 AS in_state FROM organizations WHERE org_id = $1]]
  if lock == "update" then sql = sql .. " FOR UPDATE" end
  local rows, err, sqlstate = db:query(sql, org_id)
  if not rows then return nil, err, sqlstate end
  return rows[1] or false
end

-- Columns a caller may set through update(); anything else is a programming error.
-- `state` is not one of them: it moves only through transition().
local COLUMNS = {
  failed_step = true, last_error = true, attempts = true, addon_name = true,
  addon_id = true, connection_id = true, region_url = true, schema_name = true,
  authorize_url = true, instance_url = true, sf_user_id = true, sf_username = true,
  access_token = true, refresh_token = true, org_name = true, admin_email = true,
  installer_id = true, package_version = true, environment = true, login_domain = true,
  activated_at = true, offboarded_at = true, progress = true, db_key = true,
}

-- The SET list of fields (and opts.due: seconds from now when the step is due
-- again, false: none), their values appended to args.
local function assignments(fields, opts, args)
  local sets, keys = { "updated_at = now()" }, {}
  for k in pairs(fields) do
    if not COLUMNS[k] then error("orgs.update: unknown column " .. tostring(k), 3) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    args[#args + 1] = fields[k]
    sets[#sets + 1] = string.format("%s = $%d", k, #args)
  end
  if opts.due == false then
    sets[#sets + 1] = "next_attempt_at = NULL"
  elseif opts.due then
    args[#args + 1] = opts.due
    sets[#sets + 1] = string.format("next_attempt_at = now() + make_interval(secs => $%d)", #args)
  end
  return sets
end

-- update(db, org_id, fields[, opts]) -> row | false (no row matched) | nil, err.
-- fields values: a value, or mc.null for NULL. opts.due: seconds from now when the
-- step is due again (false: none, waiting on a person); opts.where_state: only if
-- the org is still in that state (or one of a list of states).
function _M.update(db, org_id, fields, opts)
  opts = opts or {}
  local args = { org_id }
  local sets = assignments(fields, opts, args)
  local sql = "UPDATE organizations SET " .. table.concat(sets, ", ") .. " WHERE org_id = $1"
  if opts.where_state then -- one state, or a list of them
    local list = type(opts.where_state) == "table" and opts.where_state or { opts.where_state }
    args[#args + 1] = "{" .. table.concat(list, ",") .. "}"
    sql = sql .. string.format(" AND state = ANY($%d::text[])", #args)
  end
  local rows, err = db:query(sql .. " RETURNING *", table.unpack(args, 1, #args))
  if not rows then return nil, err end
  return rows[1] or false
end

local function member(list, v)
  if type(list) ~= "table" then return list == v end
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- The event kind a move is recorded as, unless the caller names one.
local function kind_of(to, by)
  if to == "failed" then return "failure" end
  if by == "operator" or by == "package" then return "request" end
  return "transition"
end

local function move(db, org_id, to, by, opts)
  local cur, err = _M.get(db, org_id, "update")
  if cur == nil then return nil, err end
  if not cur then return false, "no such org" end
  if opts.from and not member(opts.from, cur.state) then
    return false, "org is " .. cur.state, cur
  end
  local ok, why = states.allowed(cur.state, to, by)
  if not ok then return false, why, cur end
  local due = opts.due
  if due == nil then due = not (states.PERSON[to] or states.FINAL[to]) and 0 end
  local args = { org_id, to }
  local sets = assignments(opts.fields or {}, { due = due }, args)
  args[#args + 1] = cur.state
  local n = #args
  args[n + 1] = opts.kind or kind_of(to, by)
  args[n + 2] = json.encode(opts.details or {})
  local rows, uerr = db:query(string.format([[WITH moved AS (
      UPDATE organizations SET %s, state = $2, state_since = now() WHERE org_id = $1 RETURNING *),
    ev AS (INSERT INTO onboarding_events (org_id, from_state, to_state, kind, details)
      SELECT org_id, $%d, state, $%d, $%d::jsonb FROM moved)
    SELECT * FROM moved]], table.concat(sets, ", "), n, n + 1, n + 2), table.unpack(args, 1, n + 2))
  if not rows then return nil, uerr end
  local row = rows[1]
  row.from_state = cur.state
  return row
end

-- transition(db, org_id, to, by[, opts]) -> the org's new row (row.from_state:
-- where it came from) | false, why[, current row] | nil, err
-- The one way to change an org's state. by: "step", "person", "operator" or
-- "package" (states.MOVERS). Locks the row, checks the move against
-- states.MOVES, writes the state, the opts.fields and the event in one
-- statement. opts.from: the state(s) the caller expects the org in (a guard:
-- false when it has moved on); opts.due: seconds until a step is due, false for
-- none (default: 0 where a step runs, none where a person or nobody moves it);
-- opts.kind and opts.details: the event's (default kind: failure into failed,
-- request by an operator or the package, else transition).
-- Inside a transaction it joins it; otherwise it is one.
function _M.transition(db, org_id, to, by, opts)
  opts = opts or {}
  if not states.known(to) then error("orgs.transition: unknown state " .. tostring(to), 2) end
  if not states.MOVERS[by] then error("orgs.transition: unknown mover " .. tostring(by), 2) end
  if db:status() == "intrans" then return move(db, org_id, to, by, opts) end
  return db:transaction(function() return move(db, org_id, to, by, opts) end)
end

-- create(db, fields, details) -> row | false (the org exists) | nil, err
-- A first install: the row, in `received`, and its event, in one statement.
function _M.create(db, f, details)
  local rows, err = db:query([[WITH created AS (
      INSERT INTO organizations (org_id, org_name, admin_email, installer_id, package_version,
        environment, login_domain, next_attempt_at)
      VALUES ($1, $2, $3, $4, $5, $6, $7, now()) ON CONFLICT (org_id) DO NOTHING RETURNING *),
    ev AS (INSERT INTO onboarding_events (org_id, from_state, to_state, kind, details)
      SELECT org_id, NULL, state, 'request', $8::jsonb FROM created)
    SELECT * FROM created]],
    f.org_id, f.org_name, f.admin_email, f.installer_id or mc.null, f.package_version or mc.null,
    f.environment, f.login_domain or mc.null, json.encode(details or {}))
  if not rows then return nil, err end
  return rows[1] or false
end

-- event(db, org_id, from, to, kind, details) -> true | nil, err
local function event(db, org_id, from, to, kind, details)
  local rows, err = db:query(
    "INSERT INTO onboarding_events (org_id, from_state, to_state, kind, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
    org_id, from or mc.null, to, kind or "transition", json.encode(details or {}))
  if not rows then return nil, err end
  return true
end

-- note(db, org, kind, details) -> true | nil, err: an event that moves nothing
-- (a wait, a retry, a refused sign-in, a request that changed no state).
function _M.note(db, org, kind, details)
  return event(db, org.org_id, org.state, org.state, kind, details)
end

-- events(db, org_id[, limit]) -> the org's events, oldest first
function _M.events(db, org_id, limit)
  return db:query([[SELECT id, from_state, to_state, kind, details, created_at FROM
    (SELECT * FROM onboarding_events WHERE org_id = $1 ORDER BY id DESC LIMIT $2) e ORDER BY id]],
    org_id, limit or 200)
end

-- Columns list() may sort by; org_id breaks ties, so every order is total and a
-- page boundary falls between two known rows.
_M.SORTABLE = { updated_at = "timestamptz", created_at = "timestamptz", state_since = "timestamptz",
  org_name = "text", org_id = "text" }

-- The WHERE terms of list()'s filters, their values appended to args.
local function filters(q, args)
  local where = {}
  local function arg(v) args[#args + 1] = v; return "$" .. #args end
  if q.states then
    where[#where + 1] = "state = ANY(" .. arg("{" .. table.concat(q.states, ",") .. "}") .. "::text[])"
  end
  if q.environment then where[#where + 1] = "environment = " .. arg(q.environment) end
  if q.search then -- a name containing it, or an org id starting with it
    local like = q.search:gsub("[\\%%_]", "\\%0")
    where[#where + 1] = string.format("(org_name ILIKE %s OR org_id LIKE %s)",
      arg("%" .. like .. "%"), arg(like .. "%"))
  end
  if q.after then -- keyset: the rows past the last one of the previous page
    local cast = _M.SORTABLE[q.sort]
    where[#where + 1] = string.format("(%s, org_id) %s (%s::%s, %s)", q.sort, q.desc and "<" or ">",
      arg(q.after[1]), cast, arg(q.after[2]))
  end
  return where
end

-- list(db, q) -> rows (at most q.limit) | nil, err. q: states (a list),
-- environment, search, sort (a SORTABLE column), desc, after ({value, org_id}
-- of the last row seen), limit. Rows carry `in_state` (seconds in their state).
function _M.list(db, q)
  if not _M.SORTABLE[q.sort] then error("orgs.list: cannot sort by " .. tostring(q.sort), 2) end
  local args = {}
  local where = filters(q, args)
  local dir = q.desc and "DESC" or "ASC"
  args[#args + 1] = q.limit
  local sql = string.format([[SELECT org_id, org_name, environment, state, failed_step, last_error, attempts,
    next_attempt_at, state_since, created_at, updated_at, activated_at,
    extract(epoch FROM now() - state_since)::float8 AS in_state,
    %s::text AS sort_key FROM organizations %s ORDER BY %s %s, org_id %s LIMIT $%d]],
    q.sort, #where > 0 and ("WHERE " .. table.concat(where, " AND ")) or "", q.sort, dir, dir, #args)
  return db:query(sql, table.unpack(args, 1, #args))
end

-- counts(db) -> { state = n, ... } | nil, err: how many orgs are in each state
function _M.counts(db)
  local rows, err = db:query("SELECT state, count(*)::int AS n FROM organizations GROUP BY state")
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do out[r.state] = r.n end
  return out
end

-- activity(db, hours) -> { {started, active}... } for each of the last `hours`
-- hours, oldest first (the current hour last): onboardings started (a new
-- install's first event) and orgs that became active | nil, err
function _M.activity(db, hours)
  local rows, err = db:query([[SELECT
      floor(extract(epoch FROM now() - date_trunc('hour', created_at)) / 3600)::int AS ago,
      count(*) FILTER (WHERE from_state IS NULL
        OR (from_state = 'offboarded' AND to_state = 'received'))::int AS started,
      count(*) FILTER (WHERE to_state = 'active' AND from_state IS DISTINCT FROM 'active')::int AS active
    FROM onboarding_events WHERE created_at >= date_trunc('hour', now()) - make_interval(hours => $1 - 1)
    GROUP BY 1]], hours)
  if not rows then return nil, err end
  local out = {}
  for i = 1, hours do out[i] = { started = 0, active = 0 } end
  for _, r in ipairs(rows) do
    local slot = out[hours - r.ago]
    if slot then slot.started, slot.active = r.started, r.active end
  end
  return out
end

-- The fields of a row a hook or a page may see (lib.tenant owns the view).
_M.public = tenant.view

return _M
