-- sandbox.connect: Heroku Connect (docs/external-apis.md §1): the hc-central discovery service and
-- one regional API, both under one prefix (HEROKU_CONNECT_URL=http://host:port/connect).
--   hc-central  POST /auth/{app}                links the token's user to the app's
--                                               herokuconnect add-ons (404 when none is
--                                               provisioned yet); GET /connections?app=&resource_name=
--   regional    /api/v3/...: connections (list, get [?deep=true], PATCH 202, authorize_url
--               201, actions/import|export|pause|resume|restart), mappings (list, get,
--               reload 202, delete 204), legacy POST /api/v3/users/me/apps/{app}/auth
--   browser     GET|POST /sandbox/authorize/{code}: the Salesforce-authorization page that
--               authorize_url's redirect points at; approving 302s to `next`. The user
--               who approves (and whose org the connection gets): the form's username
--               or ?login_hint, else header X-Sandbox-Login (the browser's Salesforce
--               session), else the knobs' org_id/sf_username
-- Connections come from the add-ons sandbox.heroku stored (sandbox:heroku:addon:<id>,
-- plan herokuconnect:*); the connection id is not the add-on id. States move lazily
-- from stored timestamps (§1.8): NEW -> (PATCH applied) NEED_AUTHENTICATION ->
-- (authorized) IDLE; import -> IMPORT_CONFIGURATION; each mapping INITIAL -> DATA_SYNCED,
-- BAD_CONFIG for objects/fields the simulated org (sandbox.connect_org) lacks. A mapping
-- reaching DATA_SYNCED gets its table in the real Postgres named by db_key (§1.10).
-- Errors are {"message"}. Knobs (service "connect"): config_delay, import_delay,
-- sync_delay, recovery_delay (seconds), authorize_ttl (seconds), auto_approve,
-- action_status (pause/resume/restart/import, default 202), db_keys (default
-- ["DATABASE_URL"]), postgres (false: no tables), org_id, sf_username, token, and
-- faults' latency/timeout/fail_next/fail_rate/fail_status.
local json = require "mc.json"
local host = require "mc.host"
local crypto = require "mc.crypto"
local pg = require "mc.pg"
local dbs = require "mc.conns" -- the kept connections to databases
local store = require "sandbox.store"
local orgs = require "sandbox.orgs"
local faults = require "sandbox.faults"
local org = require "sandbox.connect_org"
local salesforce = require "sandbox.salesforce"

local _M = {}

local SCHEMA_NAME = "^[a-z_][a-z0-9_]*$"
local DEFAULTS = {
  config_delay = 1, import_delay = 1, sync_delay = 1, recovery_delay = 1,
  authorize_ttl = 7 * 24 * 3600, auto_approve = false, action_status = 202, postgres = true,
  org_id = "00D5e000000AbCdEAK", sf_username = "admin@acme.example", -- the fixture's first org
}

local function knob(name)
  return store.knob("connect", name, DEFAULTS[name])
end

local function key(...) return store.key("connect", ...) end

local function failure(status, message)
  return status, { message = message }, { ["Content-Type"] = "application/json" }
end

local function fault(status)
  if status == 500 then return 500, "" end -- observed: 500 with an empty body
  return failure(status, "The sandbox injected this failure.")
end

local function valid_schema(name)
  return type(name) == "string" and #name <= 63 and name:match(SCHEMA_NAME) ~= nil
end
_M.valid_schema = valid_schema

-- ---- storage ---------------------------------------------------------------

-- what each loaded object was stored as, for a save that must not undo another's
local loaded_as = setmetatable({}, { __mode = "k" })

local function decoded(raw)
  if raw == mc.null then return nil end
  local obj = json.decode(raw)
  if type(obj) == "table" then loaded_as[obj] = raw end
  return obj
end

local function load(kind, id)
  if type(id) ~= "string" or id == "" then return nil end
  return decoded(store.call("GET", key(kind, id)))
end

-- A connection's brief: what a summary (and the filters before it) reads, kept
-- beside it so that listing every connection of an app decodes a few fields each.
local function brief(conn)
  return json.encode({ id = conn.id, _id = conn._id, name = conn.name, resource_name = conn.resource_name,
    addon_id = conn.addon_id, app_name = conn.app_name, app_id = conn.app_id,
    pending = conn.sandbox_pending ~= nil })
end

local function save(kind, obj)
  store.call("SET", key(kind, obj.id), json.encode(obj))
  if kind == "conn" then store.call("HSET", key("brief"), obj.id, brief(obj)) end
end

-- Saves what only the clock moved, unless someone saved obj since it was loaded
-- (an authorization, an import): their change stands, and the clock's is made
-- again at the next read.
local SAVE_UNCHANGED = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2]) end
return false]]
local function save_moved(kind, obj)
  local raw = loaded_as[obj]
  if not raw then return save(kind, obj) end
  local new = json.encode(obj)
  local res, err = store.redis():eval(SAVE_UNCHANGED, { key(kind, obj.id) }, { raw, new })
  if res == nil then error("sandbox: redis: " .. tostring(err), 2) end
  if res == mc.null then return end
  loaded_as[obj] = new
  if kind == "conn" then store.call("HSET", key("brief"), obj.id, brief(obj)) end
end

local function base_url(req, prefix)
  return "http://" .. (req.headers["host"] or "127.0.0.1") .. prefix
end

-- ---- users and add-ons ------------------------------------------------------

-- The token's user: a stable id and e-mail derived from the token itself.
local function user_of(req)
  local token = (req.headers["authorization"] or ""):match("^Bearer%s+(%S+)$")
  local pinned = knob("token")
  if not token or (pinned and token ~= pinned) then return nil end
  local id = crypto.to_hex(crypto.sha256(token)):sub(1, 12)
  return { id = "user-" .. id, email = "user-" .. id .. "@sandbox.example.com" }
end

local function new_connection(addon)
  local now = store.iso8601()
  local id = store.uuid()
  return {
    id = id, _id = store.call("INCR", key("seq")), name = addon.name, internal_name = addon.app.name,
    resource_name = addon.name, addon_id = addon.id, app_name = addon.app.name, app_id = addon.app.id,
    team_name = mc.null, schema_name = mc.null, db_key = mc.null, database = mc.null,
    organization_id = mc.null, state = "NEW", mappings_summary_state = "OK",
    detail_url = "/api/v3/connections/" .. id, sf_info = mc.null, user_info = mc.null,
    created_at = now, auth_updated = mc.null, plan = addon.plan.name:match(":(.*)$") or "demo",
    free_edition = addon.plan.name:match(":demo$") ~= nil,
    features = { poll_db_no_merge = true, disable_bulk_writes = false },
    notifications_url = "/api/v3/connections/" .. id .. "/notifications",
    logplex_log_enabled = false, deletable = false, large_query_threshold = 10000,
    bulk_page_size = 150000, soap_batch_size = 200, sf_instance = mc.null, sf_region = mc.null,
    odata = mc.null, sandbox_mappings = {},
  }
end

local function provisioned(addon)
  return addon.state == "provisioned"
    or (addon.state == "provisioning" and host.time() >= (addon.sandbox_ready_at or 0))
end

-- Links user to every provisioned Connect add-on of app -> the connections. An
-- add-on settled for user (linked, or not Connect's) is not read again: an app
-- has an add-on per tenant, and each tenant's onboarding links its own.
local function link(user, app)
  local ids = store.call("LRANGE", store.key("heroku", "app", app, "addons"), 0, -1)
  if #ids == 0 then return {} end
  local settled_key = key("user", user.id, "settled")
  local settled = store.call("SMISMEMBER", settled_key, table.unpack(ids))
  local linked = store.call("HMGET", key("by_addon"), table.unpack(ids))
  local conns = {}
  for i, addon_id in ipairs(ids) do
    local id = linked[i]
    if settled[i] ~= 1 then
      local raw = store.call("GET", store.key("heroku", "addon", addon_id))
      local addon = raw ~= mc.null and json.decode(raw)
      id = mc.null
      if addon and addon.addon_service.name ~= "herokuconnect" then
        store.call("SADD", settled_key, addon_id)
      elseif addon and provisioned(addon) then -- one still provisioning is looked at again next time
        id = store.call("HGET", key("by_addon"), addon.id)
        if id == mc.null then
          local conn = new_connection(addon)
          if store.call("HSETNX", key("by_addon"), addon.id, conn.id) == 1 then save("conn", conn) end
          id = store.call("HGET", key("by_addon"), addon.id)
        end
        store.call("SADD", key("user", user.id, "conns"), id)
        store.call("SADD", settled_key, addon_id)
      end
    end
    if id ~= mc.null then conns[#conns + 1] = id end
  end
  return conns
end

-- ---- lazy state -------------------------------------------------------------

local function database_of(db_key)
  local url = require("mc.url").parse(os.getenv(db_key) or "")
  if not url then return mc.null end
  return { host = url.host, database = (url.path or ""):gsub("^/", ""), port = tonumber(url.port) or 5432 }
end

-- Brings conn's state up to date with the clock; saves it when it moved.
local function refresh_connection(conn, now)
  local before = json.encode(conn)
  local p = conn.sandbox_pending
  if p and now >= p.at then
    if p.schema_name then conn.schema_name = p.schema_name end
    if p.db_key then conn.db_key = p.db_key; conn.database = database_of(p.db_key) end
    if p.name then conn.name = p.name end
    if conn.db_key ~= mc.null and conn.schema_name ~= mc.null then
      conn.sandbox_config_at = conn.sandbox_config_at or p.at
    end
    conn.sandbox_pending = nil
  end
  if conn.sandbox_config_at and conn.sandbox_auth_at then
    conn.sandbox_ready_at = math.max(conn.sandbox_config_at, conn.sandbox_auth_at)
  end
  local ready = conn.sandbox_ready_at
  local state
  if conn.sandbox_paused then state = "PAUSED"
  elseif conn.sandbox_broken then state = conn.sandbox_broken
  elseif not conn.sandbox_config_at then state = "NEW"
  elseif not ready then state = "NEED_AUTHENTICATION"
  elseif conn.sandbox_import_at and now < math.max(conn.sandbox_import_at, ready) + knob("import_delay") then
    state = "IMPORT_CONFIGURATION"
  elseif conn.sandbox_recovery_until and now < conn.sandbox_recovery_until then state = "RECOVERY"
  else state = "IDLE" end
  conn.state = state
  if json.encode(conn) ~= before then save_moved("conn", conn) end
  return conn
end

local function table_name(m) return m.object_name:lower() end

local SYSTEM_COLUMNS = [[id serial primary key, sfid varchar(18), systemmodstamp timestamp,
  isdeleted boolean, createddate timestamp, _hc_lastop varchar(32), _hc_err text]]
local SYSTEM_FIELDS = { Id = "sfid", SystemModstamp = "systemmodstamp", IsDeleted = "isdeleted",
  CreatedDate = "createddate" }

-- The Postgres the connection syncs into (the URL in its db_key), for a valid
-- schema name -> db | nil, err. Connect keeps its connections to a database, so
-- the sandbox keeps one per URL too (mc.conns), instead of a new one (a backend
-- forked, a TLS handshake) on every read of a read_write mapping.
local function connection_db(conn)
  if not valid_schema(conn.schema_name) then return nil, "invalid schema name" end
  local url = os.getenv(conn.db_key)
  if not url or url == "" then return nil, conn.db_key .. " is not set" end
  return dbs.pg_at(url)
end

-- Creates (or, reloading, refills) m's table in the connection's Postgres -> the
-- number of rows seeded | nil, err
local function materialize(conn, m, reload)
  if not knob("postgres") then return #org.records(m.object_name, conn.organization_id) end
  local db, err = connection_db(conn)
  if not db then return nil, err end
  local schema, tbl = pg.quote_ident(conn.schema_name), table_name(m)
  local qualified = schema .. "." .. pg.quote_ident(tbl)
  local fields = {}
  for f in pairs(m.config.fields or {}) do
    local canonical = org.field(m.object_name, f)
    if canonical and not SYSTEM_FIELDS[canonical] then fields[#fields + 1] = canonical end
  end
  table.sort(fields)
  -- the mapping's fields: in the new table, or added to one that was there (a
  -- reload, a mapping imported again) in one statement
  local columns, adds = {}, {}
  for i, f in ipairs(fields) do
    columns[i] = pg.quote_ident(f:lower()) .. " " .. org.PG_TYPES[org.OBJECTS[m.object_name][f]]
    adds[i] = "ADD COLUMN IF NOT EXISTS " .. columns[i]
  end
  local create = { "CREATE SCHEMA IF NOT EXISTS " .. schema,
    "CREATE TABLE IF NOT EXISTS " .. qualified .. " (" .. SYSTEM_COLUMNS
      .. (#columns > 0 and ", " .. table.concat(columns, ", ") or "") .. ")" }
  local alter = #adds > 0 and ("ALTER TABLE " .. qualified .. " " .. table.concat(adds, ", ")) or nil
  local sql = {
    "CREATE UNIQUE INDEX IF NOT EXISTS " .. pg.quote_ident("hcu_idx_" .. tbl .. "_sfid")
      .. " ON " .. qualified .. " (sfid)",
    "CREATE INDEX IF NOT EXISTS " .. pg.quote_ident("hc_idx_" .. tbl .. "_systemmodstamp")
      .. " ON " .. qualified .. " (systemmodstamp)" }
  -- the mapping's own indexes, named as Connect names them (hcu_ unique, hc_ not)
  local indexed, unique_of, has_column = {}, {}, {}
  for _, f in ipairs(fields) do has_column[f] = true end
  for f, spec in pairs(m.config.indexes or {}) do
    local canonical = org.field(m.object_name, f)
    if canonical and has_column[canonical] and type(spec) == "table" then
      indexed[#indexed + 1] = canonical
      unique_of[canonical] = spec.unique == true
    end
  end
  table.sort(indexed)
  for _, f in ipairs(indexed) do
    local unique = unique_of[f]
    local col = f:lower()
    sql[#sql + 1] = "CREATE " .. (unique and "UNIQUE " or "") .. "INDEX IF NOT EXISTS "
      .. pg.quote_ident((unique and "hcu_idx_" or "hc_idx_") .. tbl .. "_" .. col) .. " ON " .. qualified
      .. " (" .. pg.quote_ident(col) .. ")"
  end
  if reload then sql[#sql + 1] = "TRUNCATE " .. qualified end
  local records = org.records(m.object_name, conn.organization_id)
  local ok, res, qerr = pcall(db.transaction, db, function()
    local there = assert(db:query("SELECT to_regclass($1) IS NOT NULL AS there", qualified))[1].there
    for _, s in ipairs(create) do assert(db:exec(s)) end
    if there and alter then assert(db:exec(alter)) end
    for _, s in ipairs(sql) do assert(db:exec(s)) end
    if #records == 0 then return true end
    -- every record in one statement: the rows as a JSON array of {column = value},
    -- each value through its column's input function, as a parameter of its own would be
    local cols = { "sfid", "systemmodstamp", "isdeleted", "createddate", "_hc_lastop" }
    for _, f in ipairs(fields) do cols[#cols + 1] = pg.quote_ident(f:lower()) end
    local rows = {}
    for i, r in ipairs(records) do
      local row = { sfid = r.Id, systemmodstamp = r.SystemModstamp, isdeleted = r.IsDeleted,
                    createddate = r.CreatedDate, _hc_lastop = "SYNCED" }
      for _, f in ipairs(fields) do row[f:lower()] = r[f] end
      rows[i] = row
    end
    local list = table.concat(cols, ", ")
    assert(db:query("INSERT INTO " .. qualified .. " (" .. list .. ") SELECT " .. list
      .. " FROM json_populate_recordset(NULL::" .. qualified .. ", $1) ON CONFLICT (sfid) DO NOTHING",
      json.encode(rows)))
    return true
  end)
  if not ok or not res then return nil, tostring(ok and qerr or res) end
  return #records
end

-- Salesforce's key prefixes, for the ids write-back gives new records.
local KEY_PREFIXES = { Account = "001", Contact = "003" }

-- Writes back rows the app inserted locally into a read_write mapping's table
-- (sfid still NULL): each gets an sfid and _hc_lastop SYNCED, and joins the
-- simulated org's records (sandbox:connect:org:<Object>). Heroku Connect does this
-- continuously; the sandbox does it when the mapping is read. -> count | nil, err
local function write_back(conn, m)
  if not knob("postgres") or m.access ~= "read_write" then return 0 end
  local db, err = connection_db(conn)
  if not db then return nil, err end
  local qualified = pg.quote_ident(conn.schema_name) .. "." .. pg.quote_ident(table_name(m))
  local rows, qerr = db:query("UPDATE " .. qualified
    .. " SET sfid = $1 || upper(substr(md5(random()::text || id::text), 1, 15)),"
    .. " _hc_lastop = 'SYNCED', _hc_err = NULL, systemmodstamp = now() AT TIME ZONE 'utc',"
    .. " createddate = coalesce(createddate, now() AT TIME ZONE 'utc'), isdeleted = coalesce(isdeleted, false)"
    .. " WHERE sfid IS NULL RETURNING *", KEY_PREFIXES[m.object_name] or "a00")
  if not rows then return nil, qerr end
  for _, row in ipairs(rows) do
    store.call("RPUSH", key("org", m.object_name), json.encode(row))
  end
  return #rows
end

-- A synced mapping polls: its times say when it last did (now, or the moment
-- a test stalled the connection). Set after the change check: a poll is not a
-- change worth storing.
local function polled(m, conn, now)
  if m.state ~= "DATA_SYNCED" or conn.sandbox_paused or conn.sandbox_broken then return end
  local at = store.iso8601(conn.sandbox_stalled_at or now)
  m.times = m.times or {}
  m.times.sf_poll, m.times.db_poll = at, at
end

local function refresh_mapping(m, conn, now)
  local before = json.encode(m)
  local ready = conn.sandbox_ready_at
  if m.sandbox_broken then m.state, m.state_description = m.sandbox_broken.state, m.sandbox_broken.description
  elseif m.sandbox_bad then m.state, m.state_description = "BAD_CONFIG", m.sandbox_bad
  elseif not ready then m.state = "INITIAL"
  else
    local start, phase = math.max(m.sandbox_imported_at, ready), "INITIAL"
    if m.sandbox_reload_at and m.sandbox_reload_at >= start then start, phase = m.sandbox_reload_at, "RELOAD_TABLE" end
    if now < start + knob("sync_delay") then m.state = phase
    elseif m.sandbox_synced ~= start then
      local n, err = materialize(conn, m, phase == "RELOAD_TABLE")
      if n then
        m.state, m.state_description, m.sandbox_synced = "DATA_SYNCED", "OK", start
        m.counts = { db = n, sf = n, pending = 0, errors = 0 }
        m.db_count_date, m.salesforce_count_date = store.iso8601(now), store.iso8601(now)
      else
        m.state, m.state_description = "DB_UNAVAILABLE", err
      end
    else m.state = "DATA_SYNCED" end
    if m.state == "DATA_SYNCED" then
      local n, err = write_back(conn, m)
      if not n then m.state, m.state_description = "DB_UNAVAILABLE", err end
    end
  end
  if json.encode(m) ~= before then
    m.updated_at = store.iso8601(now)
    save("mapping", m)
  end
  polled(m, conn, now)
  return m
end

local function mappings_of(conn, now)
  local out = {}
  for _, mid in ipairs(conn.sandbox_mappings) do
    local m = load("mapping", mid)
    if m then out[#out + 1] = refresh_mapping(m, conn, now) end
  end
  return out
end

-- ---- public shapes ------------------------------------------------------------

local function strip(obj)
  local out = {}
  for k, v in pairs(obj) do
    if not k:find("^sandbox_") then out[k] = v end
  end
  return out
end

local function public_mapping(m)
  local out = strip(m)
  out.sync_flags = m.sync_flags or {}
  return out
end

local function public_connection(conn, base, mappings)
  local out = strip(conn)
  out.region_url = base
  if mappings then
    local list = {}
    for i, m in ipairs(mappings) do list[i] = public_mapping(m) end
    out.mappings = json.array(list)
  end
  return out
end

local function summary(conn, base)
  return {
    id = conn.id, resource_name = conn.resource_name, display_name = conn.name, addon_type = "Sync",
    app_name = conn.app_name, app_id = conn.app_id, region = "us", region_url = base,
    region_flag = "us", region_label = "United States", cell_label = "Sandbox", cell = "sandbox",
    detail_url = base .. "/api/v3/connections/" .. conn.id,
  }
end

local REGIONS = { us = { flag = "us", label = "United States" } }
local function cells(base) return { sandbox = { url = base, flag = "us", label = "Sandbox" } } end

-- ---- handlers ------------------------------------------------------------------

-- A connection lives as long as its add-on: deleting the add-on deletes it
-- (and a new add-on of the same name gets a new connection).
local function alive(conn)
  return store.call("EXISTS", store.key("heroku", "addon", conn.addon_id)) == 1
end

-- The ids of the connections user may see: with resource_name, only that
-- add-on's (looked up by name, not by reading every connection: an app with
-- thousands of tenants' add-ons answers in one step, as Connect does).
local function candidates(user, resource_name)
  if resource_name == nil then return store.call("SMEMBERS", key("user", user.id, "conns")) end
  if type(resource_name) ~= "string" then return {} end -- a repeated parameter names no add-on
  local addon_id = store.call("HGET", store.key("heroku", "addon_names"), resource_name)
  if addon_id == mc.null then return {} end
  local id = store.call("HGET", key("by_addon"), addon_id)
  if id == mc.null or store.call("SISMEMBER", key("user", user.id, "conns"), id) ~= 1 then return {} end
  return { id }
end

-- The connections user sees, filtered by the query's app and resource_name, and
-- brought up to date (summaries: only a pending change, the one thing a summary
-- shows that moves). Read in two round trips however many there are: an app has
-- an add-on per tenant, and every POST /auth lists them all.
local function visible(user, query, now, summaries)
  local ids = candidates(user, query.resource_name)
  if #ids == 0 then return {} end
  table.sort(ids)
  -- summaries: the briefs, and the whole connection only where a change is pending
  -- (or no brief was kept: a sandbox state older than briefs)
  local briefs = summaries and store.call("HMGET", key("brief"), table.unpack(ids)) or {}
  local whole = {}
  local conns = {}
  for i, id in ipairs(ids) do
    local b = briefs[i] and briefs[i] ~= mc.null and json.decode(briefs[i])
    if b and not b.pending then conns[i] = b else whole[#whole + 1] = id end
  end
  if #whole > 0 then
    local keys = {}
    for i, id in ipairs(whole) do keys[i] = key("conn", id) end
    local at = {}
    for i, id in ipairs(ids) do at[id] = i end
    for i, raw in ipairs(store.call("MGET", table.unpack(keys))) do
      local conn = decoded(raw)
      if conn then conns[at[whole[i]]] = refresh_connection(conn, now) end
    end
  end
  local list = {}
  for i = 1, #ids do
    local conn = conns[i]
    if conn and (not query.app or query.app == conn.app_name or query.app == conn.app_id)
        and (not query.resource_name or query.resource_name == conn.resource_name) then
      list[#list + 1] = conn
    end
  end
  if #list == 0 then return {} end
  -- alive: its add-on still exists
  local exists = assert(store.redis():pipeline(function(p)
    for _, conn in ipairs(list) do p:call("EXISTS", store.key("heroku", "addon", conn.addon_id)) end
  end))
  local out = {}
  for i, conn in ipairs(list) do
    if exists[i] == 1 then out[#out + 1] = conn end
  end
  table.sort(out, function(a, b) return a._id < b._id end)
  return out
end

-- The connection req.params.id names, if user is on its access list.
local function owned(user, id)
  if type(id) ~= "string" or store.call("SISMEMBER", key("user", user.id, "conns"), id) ~= 1 then return nil end
  local conn = load("conn", id)
  return conn and alive(conn) and refresh_connection(conn, host.time()) or nil
end

local function not_found() return failure(404, "Not found.") end

local function central_auth(req, user, ctx)
  local ids = link(user, req.params.app)
  if #ids == 0 then
    return failure(404, "No Heroku Connect add-on is provisioned on app " .. req.params.app .. ".")
  end
  local list = {}
  for i, conn in ipairs(visible(user, { app = req.params.app }, host.time(), true)) do
    list[i] = summary(conn, ctx.base)
  end
  return 200, { user = user, connections = json.array(list), regions = REGIONS, cells = cells(ctx.base) }
end

local function central_list(req, user, ctx)
  local list = {}
  for i, conn in ipairs(visible(user, req.query, host.time(), true)) do list[i] = summary(conn, ctx.base) end
  return 200, { results = json.array(list), count = #list, next = mc.null, previous = mc.null,
                regions = REGIONS, cells = cells(ctx.base) }
end

local function legacy_auth(req, user, ctx)
  link(user, req.params.app)
  return central_list({ query = { app = req.params.app } }, user, ctx)
end

local function list_connections(req, user, ctx)
  local now, deep = host.time(), req.query.deep == "true"
  local list = {}
  for i, conn in ipairs(visible(user, req.query, now)) do
    list[i] = public_connection(conn, ctx.base, deep and mappings_of(conn, now) or nil)
  end
  return 200, { count = #list, results = json.array(list) }
end

local function show_connection(req, user, ctx)
  local conn = owned(user, req.params.id)
  if not conn then return not_found() end
  local deep = req.query.deep == "true"
  return 200, public_connection(conn, ctx.base, deep and mappings_of(conn, host.time()) or nil)
end

local function patch_connection(req, user, ctx)
  local conn = owned(user, req.params.id)
  if not conn then return not_found() end
  local body = req.json()
  if type(body) ~= "table" then return failure(400, "Invalid request parameters") end
  if body.schema_name ~= nil and not valid_schema(body.schema_name) then
    return failure(400, "schema_name must be a valid Postgres schema name")
  end
  if body.db_key ~= nil then
    local known = false
    for _, k in ipairs(knob("db_keys") or { "DATABASE_URL" }) do known = known or k == body.db_key end
    if not known then return failure(400, "db_key must name a Heroku Postgres config var of the app") end
  end
  if body.name ~= nil and type(body.name) ~= "string" then return failure(400, "Invalid request parameters") end
  if body.schema_name and conn.schema_name ~= mc.null and body.schema_name ~= conn.schema_name
      and #conn.sandbox_mappings > 0 then
    return failure(400, "The schema cannot be changed while mappings exist.")
  end
  local p = conn.sandbox_pending or {}
  p.schema_name, p.db_key, p.name = body.schema_name or p.schema_name, body.db_key or p.db_key, body.name or p.name
  p.at = host.time() + knob("config_delay")
  conn.sandbox_pending = p
  save("conn", conn)
  return 202, public_connection(conn, ctx.base)
end

local function authorize_url(req, user, ctx)
  local conn = owned(user, req.params.id)
  if not conn then return not_found() end
  local body = (req.body or "") ~= "" and req.json() or {}
  if type(body) ~= "table" then return failure(400, "Invalid request parameters") end
  local env = body.environment or "production"
  if env ~= "production" and env ~= "sandbox" and env ~= "custom" then
    return failure(400, "environment must be production, sandbox or custom")
  end
  if env == "custom" and type(body.domain) ~= "string" then return failure(400, "domain is required for custom") end
  if body["next"] ~= nil and (type(body["next"]) ~= "string" or not body["next"]:match("^https?://[^%s]+$")) then
    return failure(400, "next must be an absolute http(s) URL")
  end
  local code = crypto.to_base64url(crypto.random(24))
  store.call("SET", key("authz", code), json.encode({ conn = conn.id, next = body["next"], environment = env,
    domain = body.domain, api_version = body.api_version }), "EX", math.max(1, math.ceil(knob("authorize_ttl"))))
  return 201, { redirect = ctx.base .. "/sandbox/authorize/" .. code }
end

local DOMAINS = { production = "https://login.salesforce.com", sandbox = "https://test.salesforce.com" }

-- fo, fu: the simulated org and user who approve, else (nil) the knobs'
local function approve(code, grant, fo, fu)
  local conn = load("conn", grant.conn)
  if not conn then return end
  local now = host.time()
  local org_id, username, user_id = knob("org_id"), knob("sf_username"), "005000000000001AAA"
  if fo then org_id, username, user_id = fo.org_id, fu.username, fu.user_id end
  conn.sandbox_auth_at = conn.sandbox_auth_at or now
  conn.auth_updated = store.iso8601(now)
  conn.organization_id = org_id
  conn.sf_info = { username = username, organization_id = org_id, environment = grant.environment,
    domain = grant.domain or DOMAINS[grant.environment], api_version = grant.api_version or "64.0" }
  conn.user_info = { user_id = user_id, organization_id = org_id, username = username,
    email = username, active = true }
  save("conn", conn)
  store.call("DEL", key("authz", code))
end

local function page(status, title, body)
  return status, "<!doctype html><title>" .. title .. "</title><h1>" .. title .. "</h1>" .. (body or ""),
    { ["Content-Type"] = "text/html; charset=utf-8" }
end

local function authorize_page(req)
  local code = req.params.code
  local raw = store.call("GET", key("authz", code))
  if raw == mc.null then return page(404, "This authorization link is unknown or has expired") end
  local grant = json.decode(raw)
  local decision = req.method == "POST" and (req.form().decision or "approve")
    or (knob("auto_approve") and "approve")
  if not decision then
    return page(200, "Authorize Heroku Connect",
      '<form method="post"><label>Salesforce username <input name="username"></label>'
      .. '<button name="decision" value="approve">Allow</button>'
      .. '<button name="decision" value="deny">Deny</button></form>')
  end
  if decision ~= "approve" then return page(403, "Authorization denied") end
  -- the user: the form's username or login_hint, else the browser's Salesforce session
  local login = salesforce.login_of(req, req.method == "POST" and req.form() or req.query)
  local fo, fu = orgs.by_username(login)
  -- Connect sends the user to the login host of the environment asked for; a
  -- simulated org's user logs in only at their own (custom: My Domain, any org)
  if fo and grant.environment ~= "custom" and fo.environment ~= grant.environment then
    return salesforce.login_error_page()
  end
  approve(code, grant, fo, fu)
  if grant["next"] then return 302, "", { Location = grant["next"] } end
  return page(200, "Heroku Connect is authorized")
end

-- Import: like a PATCH of the mappings; always accepted when well formed.
local function check_import(doc)
  if type(doc) ~= "table" or doc.version ~= 1 or type(doc.mappings) ~= "table" then return false end
  for _, m in ipairs(doc.mappings) do
    if type(m) ~= "table" or type(m.object_name) ~= "string" or m.object_name == ""
        or type(m.config) ~= "table" or (m.config.fields ~= nil and type(m.config.fields) ~= "table") then
      return false
    end
  end
  return true
end

local function bad_config(object_name, fields)
  local canonical = org.object(object_name)
  if not canonical then return "Object " .. object_name .. " does not exist in the organization" end
  for f in pairs(fields or {}) do
    if not org.field(canonical, f) then return "Field " .. canonical .. "." .. f .. " does not exist" end
  end
end

local function import(req, user)
  local conn = owned(user, req.params.id)
  if not conn then return not_found() end
  local doc = req.json()
  if not check_import(doc) then return failure(400, "Invalid request parameters") end
  local now = host.time()
  local existing = {}
  for _, mid in ipairs(conn.sandbox_mappings) do
    local m = load("mapping", mid)
    if m then existing[m.object_name:lower()] = m end
  end
  for _, spec in ipairs(doc.mappings) do
    local name = org.object(spec.object_name) or spec.object_name
    local m = existing[name:lower()]
    if not m then
      local id = store.uuid()
      m = { id = id, _id = store.call("INCR", key("seq")), object_name = name, created_at = store.iso8601(now),
        detail_url = "/api/v3/mappings/" .. id, errors_url = "/api/v3/mappings/" .. id .. "/errors",
        schema_url = "/api/v3/connections/" .. conn.id .. "/schemas/" .. name, connection = { id = conn.id },
        counts = { db = 0, sf = 0, pending = 0, errors = 0 }, actively_writing = false, has_hc_columns = true,
        times = { sf_poll = mc.null, sf_write = mc.null, db_poll = mc.null, db_write = mc.null },
        db_count_date = mc.null, salesforce_count_date = mc.null, is_polling = false, revision = 0 }
      conn.sandbox_mappings[#conn.sandbox_mappings + 1] = id
    end
    local c = spec.config
    m.config = { access = c.access or "read_only", sf_polling_seconds = c.sf_polling_seconds or 600,
      sf_notify_enabled = c.sf_notify_enabled or false, sf_max_daily_api_calls = c.sf_max_daily_api_calls or 30000,
      fields = c.fields or {}, indexes = c.indexes or {}, upsert_field = c.upsert_field,
      applied_at = store.iso8601(now) }
    m.access = m.config.access
    m.sf_polling_seconds, m.sf_notify_enabled = m.config.sf_polling_seconds, m.config.sf_notify_enabled
    m.upsert_field = c.upsert_field or mc.null
    m.revision = m.revision + 1
    m.state, m.state_description, m.updated_at = "INITIAL", "OK", store.iso8601(now)
    m.sandbox_bad = bad_config(spec.object_name, c.fields)
    m.sandbox_imported_at, m.sandbox_reload_at, m.sandbox_synced = now, nil, nil
    save("mapping", m)
  end
  conn.sandbox_import_at = now
  save("conn", conn)
  return knob("action_status"), { message = "success" }
end

local function export(req, user)
  local conn = owned(user, req.params.id)
  if not conn then return not_found() end
  local list = {}
  for i, m in ipairs(mappings_of(conn, host.time())) do
    m.config.revision = m.revision
    list[i] = { object_name = m.object_name, config = m.config }
  end
  return 200, { version = 1, mappings = json.array(list), connection = {
    organization_id = conn.organization_id, app_name = conn.app_name, exported_at = store.iso8601(),
    features = conn.features, api_version = conn.sf_info ~= mc.null and conn.sf_info.api_version or "64.0",
    name = conn.name, logplex_log_enabled = conn.logplex_log_enabled } }
end

local function action(change)
  return function(req, user)
    local conn = owned(user, req.params.id)
    if not conn then return not_found() end
    change(conn, host.time())
    save("conn", conn)
    refresh_connection(conn, host.time())
    return knob("action_status"), { message = "success" }
  end
end

local pause = action(function(conn) conn.sandbox_paused = true end)
local resume = action(function(conn) conn.sandbox_paused = nil end)
local restart = action(function(conn, now)
  conn.sandbox_paused = nil
  conn.sandbox_recovery_until = now + knob("recovery_delay")
end)

local function list_mappings(req, user)
  local conn = owned(user, req.params.id)
  if not conn then return not_found() end
  local list = {}
  for i, m in ipairs(mappings_of(conn, host.time())) do list[i] = public_mapping(m) end
  return 200, { count = #list, results = json.array(list) }
end

-- The mapping req.params.id names and its connection, if user may see them.
local function owned_mapping(user, id)
  local m = load("mapping", id)
  if not m then return nil end
  local conn = owned(user, m.connection.id)
  if not conn then return nil end
  return refresh_mapping(m, conn, host.time()), conn
end

local function show_mapping(req, user)
  local m = owned_mapping(user, req.params.id)
  if not m then return not_found() end
  return 200, public_mapping(m)
end

local function reload_mapping(req, user)
  local m, conn = owned_mapping(user, req.params.id)
  if not m then return not_found() end
  if m.sandbox_bad then return failure(400, "The mapping is not valid: " .. m.sandbox_bad) end
  m.sandbox_reload_at = host.time()
  save("mapping", m)
  return 202, public_mapping(refresh_mapping(m, conn, host.time()))
end

local function delete_mapping(req, user)
  local m, conn = owned_mapping(user, req.params.id)
  if not m then return not_found() end
  for i, mid in ipairs(conn.sandbox_mappings) do
    if mid == m.id then table.remove(conn.sandbox_mappings, i); break end
  end
  save("conn", conn)
  store.call("DEL", key("mapping", m.id))
  if m.sandbox_synced and knob("postgres") then
    local db = connection_db(conn)
    if db then
      db:exec("DROP TABLE IF EXISTS " .. pg.quote_ident(conn.schema_name) .. "." .. pg.quote_ident(table_name(m)))
    end
  end
  return 204
end

-- ---- breaking and healing (sandbox.control) ----------------------------------------

local BREAKABLE = { NEED_AUTHENTICATION = true, PAUSED = true, SYSTEM_ON_ICE = true, SYSTEM_ERROR = true,
  DB_UNAVAILABLE = true, UNAUTHORIZED = true }

-- breaks(id, doc) -> the connection | nil, status, err. doc: {state = S} (the
-- connection: NEED_AUTHENTICATION drops its authorization, so only authorizing
-- again heals it; PAUSED is actions/pause), {mapping = object, state, description},
-- or {stall = true} (the mappings stop polling from now).
function _M.breaks(id, doc)
  local conn = load("conn", id)
  if not conn then return nil, 404, "no such connection" end
  if doc.mapping ~= nil then
    for _, mid in ipairs(conn.sandbox_mappings) do
      local m = load("mapping", mid)
      if m and m.object_name:lower() == tostring(doc.mapping):lower() then
        m.sandbox_broken = { state = doc.state or "SYSTEM_ERROR",
          description = doc.description or "broken by the sandbox" }
        save("mapping", m)
        return conn
      end
    end
    return nil, 404, "no mapping " .. tostring(doc.mapping)
  elseif doc.stall then
    conn.sandbox_stalled_at = host.time()
  elseif doc.state == "NEED_AUTHENTICATION" then
    conn.sandbox_auth_at, conn.sandbox_ready_at = nil, nil
  elseif doc.state == "PAUSED" then
    conn.sandbox_paused = true
  elseif BREAKABLE[doc.state] then
    conn.sandbox_broken = doc.state
  else
    return nil, 400, "give state (a connection state), mapping + state, or stall"
  end
  save("conn", conn)
  return conn
end

-- heals(id) -> the connection, every break undone (a lost authorization as if
-- the admin had authorized again) | nil, status, err
function _M.heals(id)
  local conn = load("conn", id)
  if not conn then return nil, 404, "no such connection" end
  conn.sandbox_broken, conn.sandbox_paused, conn.sandbox_stalled_at = nil, nil, nil
  conn.sandbox_auth_at = conn.sandbox_auth_at or host.time()
  save("conn", conn)
  for _, mid in ipairs(conn.sandbox_mappings) do
    local m = load("mapping", mid)
    if m and m.sandbox_broken then m.sandbox_broken = nil; save("mapping", m) end
  end
  return conn
end

-- ---- routes --------------------------------------------------------------------

function _M.mount(app, prefix)
  local function route(method, path, handler)
    app:route(method, prefix .. path, faults.wrap("connect", function(req)
      local user = user_of(req)
      if not user then return failure(401, "Invalid credentials provided.") end
      local status, body, headers = handler(req, user, { base = base_url(req, prefix) })
      return status, body, headers or { ["Content-Type"] = "application/json" }
    end, fault))
  end
  route("POST", "/auth/:app", central_auth)
  route("GET", "/connections", central_list)
  route("POST", "/api/v3/users/me/apps/:app/auth", legacy_auth)
  route("GET", "/api/v3/connections", list_connections)
  route("GET", "/api/v3/connections/:id", show_connection)
  route("PATCH", "/api/v3/connections/:id", patch_connection)
  route("POST", "/api/v3/connections/:id/authorize_url", authorize_url)
  route("POST", "/api/v3/connections/:id/actions/import", import)
  route("GET", "/api/v3/connections/:id/actions/export", export)
  route("POST", "/api/v3/connections/:id/actions/pause", pause)
  route("POST", "/api/v3/connections/:id/actions/resume", resume)
  route("POST", "/api/v3/connections/:id/actions/restart", restart)
  route("GET", "/api/v3/connections/:id/mappings", list_mappings)
  route("GET", "/api/v3/mappings/:id", show_mapping)
  route("DELETE", "/api/v3/mappings/:id", delete_mapping)
  route("POST", "/api/v3/mappings/:id/actions/reload", reload_mapping)
  app:get(prefix .. "/sandbox/authorize/:code", authorize_page)
  app:post(prefix .. "/sandbox/authorize/:code", authorize_page)
end

return _M
