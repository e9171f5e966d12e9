-- social.sync: one tenant's social run. Reads the tenant's accounts with a
-- handle from its schema, lets its hooks pick the accounts (social_accounts)
-- and the provider (social_provider), and for each account fetches the posts
-- newer than its cursor, page by page, each page stored with the cursor in one
-- transaction (social.ingest).
--   sync.run(org_id) -> summary | nil, err
--   summary = {status = "done" | "skipped" | "busy" | "deferred", reason,
--              defer_until (epoch), accounts, requests, inserted, updated}
-- Rate limits, kept in Redis so every worker sees them:
--   social:rate:<provider>      the provider said "no more until <reset>" (429 or
--                               remaining 0): nobody calls it before then
--   social:budget:<org>:<win>   requests this tenant made in this 15-minute
--                               window; SOCIAL_TENANT_BUDGET at most, so one
--                               tenant cannot spend the app's whole quota
--   social:lock:<org>           one run per tenant at a time
-- A run that meets a limit stops where it is (everything fetched so far is
-- committed, cursors included) and answers "deferred" with the time to resume.
local config = require "config"
local host = require "mc.host"
local log = require "mc.log"
local crypto = require "mc.crypto"
local db = require "lib.db"
local tenants = require "lib.tenant"
local hooks = require "lib.hooks"
local provider = require "social.provider"
local tables = require "social.tables"
local ingest = require "social.ingest"

local _M = {}

_M.WINDOW = 900
local LOCK_TTL = 900

local RELEASE = [[if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0]]

local function settings(name)
  return {
    budget = config.get("SOCIAL_TENANT_BUDGET"),
    max_pages = config.get("SOCIAL_MAX_PAGES"),
    batch = config.get("SOCIAL_BATCH"),
    namespace = config.get("FORCE_NAMESPACE"),
    base_url = name == "x" and config.get("X_API_URL")
      or config.need("MASTODON_URL"),
    token = name == "x" and config.get("X_BEARER_TOKEN") or config.get("MASTODON_TOKEN"),
  }
end

-- ---- limits ----------------------------------------------------------------------

-- blocked(r, name) -> epoch until which the provider is not to be called, or nil
local function blocked(r, name)
  local v = r:call("GET", "social:rate:" .. name)
  local reset = tonumber(v)
  if reset and reset > host.time() then return reset end
  return nil
end

local function block(r, name, reset)
  local ttl = math.max(1, math.ceil(reset - host.time()))
  r:call("SET", "social:rate:" .. name, string.format("%.3f", reset), "EX", ttl)
end

-- spend(r, org_id, budget) -> true | false, window end (the tenant's budget is
-- spent) | nil, err
local function spend(r, org_id, budget)
  local now = host.time()
  local start = math.floor(now / _M.WINDOW) * _M.WINDOW
  local key = "social:budget:" .. org_id .. ":" .. start
  local used, err = r:call("INCR", key)
  if not used then return nil, "redis: " .. err end
  if used == 1 then r:call("EXPIRE", key, _M.WINDOW + 60) end
  if used > budget then return false, start + _M.WINDOW end
  return true
end

-- ---- hooks -------------------------------------------------------------------------

local function hook_provider(tenant)
  local ok, name = hooks.run(tenant, "social_provider")
  if not ok then return nil, name end
  name = name or "x"
  if not provider.NAMES[name] then return nil, "tenant hook social_provider gave " .. tostring(name) end
  return name
end

-- The hook's picks, checked: each a table with an sfid and a string handle.
local function hook_accounts(tenant, accounts)
  local ok, picked = hooks.run(tenant, "social_accounts", accounts)
  if not ok then return nil, picked end
  if picked == nil then picked = accounts end
  if type(picked) ~= "table" then return nil, "tenant hook social_accounts must return an array" end
  local out = {}
  for i, a in ipairs(picked) do
    if type(a) ~= "table" or type(a.sfid) ~= "string" or type(a.handle) ~= "string" then
      return nil, "tenant hook social_accounts: item " .. i .. " needs a string sfid and handle"
    end
    out[#out + 1] = a
  end
  return out
end

-- ---- one account -------------------------------------------------------------------

-- flush(st, account, source, cursor, posts, done) -> the cursor after | nil, err:
-- the posts gathered so far and the cursor, one transaction
local function flush(st, account, source, cursor, posts, done)
  local after = ingest.cursor_after(cursor, posts, done)
  local inserted, updated = ingest.batch(st.conn, st.target, { org_id = st.org_id, provider = st.provider,
    source = source, account_sfid = account.sfid, posts = posts, cursor = after }, st.app)
  if not inserted then return nil, updated end
  st.summary.inserted = st.summary.inserted + inserted
  st.summary.updated = st.summary.updated + updated
  st.summary.fetched = st.summary.fetched + #posts
  return after
end

-- fetch_pages(st, source, query, page, acc) -> posts, done, stop, next page:
-- the account's next pages, until SOCIAL_BATCH posts or SOCIAL_MAX_PAGES pages
-- this run (acc.pages counts them); stop = {defer_until} | {err} | {pages}
local function fetch_pages(st, source, query, page, acc)
  local posts = {}
  while acc.pages < st.cfg.max_pages do
    acc.pages = acc.pages + 1
    local until_at = blocked(st.redis, st.provider)
    if until_at then return posts, false, { defer_until = until_at }, page end
    local ok, window_end = spend(st.redis, st.org_id, st.cfg.budget)
    if ok == nil then return posts, false, { err = window_end }, page end
    if not ok then return posts, false, { defer_until = window_end }, page end
    st.summary.requests = st.summary.requests + 1
    local res, err, failure = st.client:fetch(source, query, page)
    if not res then
      if failure and failure.rate_limited then
        block(st.redis, st.provider, failure.reset)
        return posts, false, { defer_until = failure.reset }, page
      end
      return posts, false, { err = err }, page
    end
    if res.rate and res.rate.remaining == 0 and res.rate.reset then block(st.redis, st.provider, res.rate.reset) end
    for _, p in ipairs(res.posts) do posts[#posts + 1] = p end
    page = res.next
    if not page then return posts, true end
    if #posts >= st.cfg.batch then return posts, false, nil, page end
  end
  return posts, false, { pages = true }
end

-- account_run(st, account) -> true | nil, err | false, defer_until. Pages are
-- gathered into batches of SOCIAL_BATCH posts, each stored with its cursor in
-- one transaction; what was fetched before a limit or an error is stored too.
local function account_run(st, account)
  local source, why = st.client:source(account)
  if not source then
    st.log.warn("social account skipped", { account = account.sfid, reason = why })
    return true
  end
  local cursor, cerr = ingest.cursor(st.app, st.org_id, st.provider, source)
  if not cursor then return nil, cerr end
  local query = { since_id = cursor.since_id, until_id = cursor.until_id }
  local page, acc = nil, { pages = 0 }
  while true do
    local posts, done, stop
    posts, done, stop, page = fetch_pages(st, source, query, page, acc)
    if #posts > 0 or done then
      local err
      cursor, err = flush(st, account, source, cursor, posts, done)
      if not cursor then return nil, err end
    end
    if done then return true end
    if stop then
      if stop.err then return nil, stop.err end
      if stop.defer_until then return false, stop.defer_until end
      return true -- SOCIAL_MAX_PAGES reached: the cursor holds the rest for the next run
    end
  end
end

-- ---- one tenant -----------------------------------------------------------------------

local function run_locked(st, org)
  local tenant = org
  local name, perr = hook_provider(tenant)
  if not name then return nil, perr end
  st.provider = name
  st.cfg = settings(name)
  local mod, lerr = provider.load(name)
  if not mod then return nil, lerr end
  st.client = mod.new({ base_url = st.cfg.base_url, token = st.cfg.token })
  local target, terr = tables.inspect(st.conn, org.schema_name, tables.names(st.cfg.namespace))
  if not target then return nil, "tenant tables: " .. terr end
  st.target = target
  local all, aerr = tables.accounts(st.conn, target)
  if not all then return nil, aerr end
  local accounts, herr = hook_accounts(tenant, all)
  if not accounts then return nil, herr end
  if #accounts == 0 then
    st.summary.status, st.summary.reason = "skipped", "no accounts with a handle"
    return st.summary
  end
  local until_at = blocked(st.redis, name)
  if until_at then
    st.summary.status, st.summary.defer_until = "deferred", until_at
    return st.summary
  end
  for _, account in ipairs(accounts) do
    local ok, err = account_run(st, account)
    if ok == nil then return nil, err end
    st.summary.accounts = st.summary.accounts + 1
    if ok == false then
      st.summary.status, st.summary.defer_until = "deferred", err
      return st.summary
    end
  end
  st.summary.status = "done"
  return st.summary
end

function _M.run(org_id, opts)
  opts = opts or {}
  local conn, err = db.conn()
  if not conn then return nil, err end
  local r, rerr = db.redis()
  if not r then return nil, rerr end
  local summary = { org_id = org_id, accounts = 0, requests = 0, inserted = 0, updated = 0, fetched = 0 }
  local org, gerr = tenants.active(conn, org_id)
  if org == nil then return nil, "reading the org: " .. tostring(gerr) end
  if not org then
    summary.status, summary.reason = "skipped", "not an active tenant"
    return summary
  end
  -- the tenant's tables in its own database (its db_key); the cursors in ours
  local tconn, terr = db.tenant(org)
  if not tconn then return nil, terr end
  local token = crypto.to_hex(crypto.random(8))
  local got, lerr = r:call("SET", "social:lock:" .. org_id, token, "NX", "EX", LOCK_TTL)
  if got == nil then return nil, "redis: " .. lerr end
  if got ~= "OK" then
    summary.status, summary.reason = "busy", "another run holds the tenant"
    return summary
  end
  local st = { conn = tconn, app = conn, redis = r, org_id = org_id, summary = summary,
    log = opts.log or log.with({ org_id = org_id }) }
  local ok, res, rerr2 = pcall(run_locked, st, org)
  r:eval(RELEASE, { "social:lock:" .. org_id }, { token })
  if not ok then error(res, 0) end
  return res, rerr2
end

return _M
