-- config: every environment variable the application reads, with its default
-- and its check, in one table. The host calls check(process) before `web`,
-- `worker` or `clock` serve: a missing or malformed variable stops the process
-- at start, every one named in one message, instead of an error on the first
-- request that needs it. The application reads values through get(name), never
-- through os.getenv. Variables the host itself reads (PORT, WEB_*, WORKER_*,
-- LOG_LEVEL, SENDGRID_*, SMTP_*, MAIL_*) are checked where the host reads them.
local env = require "mc.env"
local host = require "mc.host"

local _M = {}

local HTTP = { schemes = { "http", "https" } }

-- mc.env's enum reader in the (name, default, opts) shape of the others
local function enum(name, default, choices) return env.enum(name, choices, default) end
local DAY = 24 * 3600

-- name -> { read, default, opts, need = {process = true}, doc }
-- read: a reader of mc.env; need: the processes that cannot work without it.
local VARS = {
  APP_URL = { env.url, nil, HTTP, need = { web = true, worker = true },
    doc = "this service's public URL (mail links, the OAuth redirect); "
      .. "default https://$HEROKU_APP_NAME.herokuapp.com" },
  ADMIN_TOKEN = { env.str, nil, nil, min_len = 16,
    doc = "the operator's bearer token, also the dashboard's sign-in secret "
      .. "(unset: operator calls are refused, 401, and /admin is off)" },
  ADMIN_SESSION_TTL = { env.int, 8 * 3600, { min = 60, max = 7 * DAY },
    doc = "seconds a dashboard sign-in lasts" },
  ADMIN_SIGNIN_LIMIT = { env.int, 10, { min = 1 },
    doc = "dashboard sign-in attempts per client address per 5 minutes (10 times that from all addresses)" },
  CALLBACK_SECRET = { env.str, nil, nil, doc = "the HMAC secret the package signs callbacks with" },
  CALLBACK_SECRET_PREVIOUS = { env.str, nil, nil, doc = "the secret before a rotation, accepted too" },
  CALLBACK_SIGNATURES = { enum, "on", { "on", "off" }, doc = "off: callbacks unsigned (a local demo only)" },
  CALLBACK_TOLERANCE = { env.int, 300, { min = 1 }, doc = "seconds a signed timestamp stays good" },
  OAUTH_STATE_TTL = { env.int, 900, { min = 10 }, doc = "seconds a sign-in's OAuth state lives" },
  AUTHENTICATE_LINK_TTL = { env.int, 7 * DAY, { min = 60 }, doc = "seconds the mailed sign-in link works" },
  CONNECT_DB_KEY = { env.str, "DATABASE_URL", nil, doc = "the config var Heroku Connect writes to" },
  TENANT_DATABASES = { env.list, {}, nil,
    doc = "more config vars (Postgres URLs) tenants may be placed in, besides CONNECT_DB_KEY" },
  ONBOARDING_POLL_MIN = { env.number, 2, { min = 0.05 }, doc = "first poll delay, seconds" },
  ONBOARDING_POLL_MAX = { env.number, 60, { min = 0.05 }, doc = "longest poll delay, seconds" },
  ONBOARDING_RETRY_MAX = { env.number, 300, { min = 0.05 }, doc = "longest retry delay, seconds" },
  ONBOARDING_MAX_ATTEMPTS = { env.int, 12, { min = 1 }, doc = "transient failures before a step fails the org" },
  ONBOARDING_WAIT_LIMIT = { env.number, 6 * 3600, { min = 1 }, doc = "seconds a step may wait before it fails" },
  OFFBOARD_STEP_WAIT = { env.number, 20, { min = 0.01, max = 600 },
    doc = "seconds the offboarding waits for a step still running before it retries" },
  HEALTH_INTERVAL = { env.int, 300, { min = 10 },
    doc = "seconds between two health checks of an onboarded org (the visits are spread over it)" },
  HEALTH_STALE_AFTER = { env.int, 3600, { min = 60 },
    doc = "seconds without sync activity before an org counts as degraded" },
  OPS_EMAIL = { env.str, nil, nil, doc = "where operator alerts are mailed (unset: the log line alone)" },
  ARCHIVE_DAYS = { env.int, 30, { min = 0 }, doc = "days an offboarded tenant's archived schema is kept" },
  ONBOARDING_SWEEP_GRACE = { env.number, 120, { min = 1 }, doc = "seconds overdue before the sweep wakes an org" },
  HEROKU_API_TOKEN = { env.str, nil, nil, need = { worker = true }, doc = "Heroku Platform API token" },
  HEROKU_API_URL = { env.url, "https://api.heroku.com", HTTP, doc = "Heroku Platform API base URL" },
  HEROKU_APP_NAME = { env.str, nil, nil, need = { worker = true }, doc = "the Heroku app the add-ons attach to" },
  HEROKU_CONNECT_PLAN = { env.str, "herokuconnect:demo", nil, doc = "the add-on plan" },
  HEROKU_CONNECT_URL = { env.url, "https://hc-central.heroku.com", HTTP, doc = "Heroku Connect API base URL" },
  SALESFORCE_CLIENT_ID = { env.str, nil, nil, need = { web = true }, doc = "the connected app's consumer key" },
  SALESFORCE_CLIENT_SECRET = { env.str, nil, nil, need = { web = true }, doc = "the connected app's consumer secret" },
  SALESFORCE_LOGIN_URL = { env.url, "https://login.salesforce.com", HTTP, doc = "production login host" },
  SALESFORCE_SANDBOX_LOGIN_URL = { env.url, "https://test.salesforce.com", HTTP, doc = "sandbox login host" },
  SALESFORCE_LOGIN_DOMAINS = { env.list, { "my.salesforce.com" }, nil,
    doc = "suffixes a custom login domain may have" },
  FORCE_NAMESPACE = { env.str, nil, nil, doc = "the managed package's namespace prefix" },
  SERVICE_NAME = { env.str, "multiconnect", nil, doc = "the name mails sign with" },
  TENANTS_DIR = { env.str, nil, nil, doc = "the tenant hooks' folder (default scripts/tenants)" },
  TENANT_HOOK_MEMORY = { env.int, 16 * 1024 * 1024, { min = 256 * 1024 }, doc = "bytes a tenant hook may allocate" },
  TENANT_HOOK_INSTRUCTIONS = { env.int, 50000000, { min = 1 }, doc = "instructions a tenant hook may run" },
  TENANT_HOOK_TIMEOUT = { env.number, 2, { min = 0.001, max = 86400 }, doc = "seconds a tenant hook may run" },
  SOCIAL_TENANT_BUDGET = { env.int, 60, { min = 1 }, doc = "social API calls per tenant per window" },
  SOCIAL_MAX_PAGES = { env.int, 10, { min = 1 }, doc = "pages per account per run" },
  SOCIAL_BATCH = { env.int, 1000, { min = 1 }, doc = "posts per ingest transaction" },
  X_API_URL = { env.url, "https://api.x.com", HTTP, doc = "X API base URL" },
  X_BEARER_TOKEN = { env.str, nil, nil, doc = "X API bearer token" },
  MASTODON_URL = { env.url, nil, HTTP, doc = "the Mastodon instance" },
  MASTODON_TOKEN = { env.str, nil, nil, doc = "Mastodon access token" },
  DATABASE_URL = { env.url, nil, { schemes = { "postgres", "postgresql" } }, need = { web = true, worker = true },
    doc = "the ISV's Postgres" },
  REDIS_URL = { env.url, nil, { schemes = { "redis", "rediss" } }, need = { web = true, worker = true, clock = true },
    doc = "Redis (jobs, replay keys, OAuth states); REDIS_TLS_URL wins when set" },
  REDIS_TLS_URL = { env.url, nil, { schemes = { "rediss" } }, doc = "Heroku Redis's TLS URL" },
  ENCRYPTION_KEYS = { env.str, nil, nil, need = { web = true, worker = true },
    doc = "id:base64 keys that seal tokens" },
}
_M.VARS = VARS

-- Defaults that depend on another variable.
local DERIVED = {
  APP_URL = function()
    local app = env.get("HEROKU_APP_NAME")
    return app and ("https://" .. app .. ".herokuapp.com") or nil
  end,
  REDIS_URL = function() return env.get("REDIS_TLS_URL") end,
  TENANTS_DIR = function() return host.root .. "/scripts/tenants" end,
}

local function read(name)
  local v = VARS[name]
  if not v then error("config: " .. tostring(name) .. " is not declared in scripts/config.lua", 3) end
  local default = v[2]
  if default == nil and DERIVED[name] then default = DERIVED[name]() end
  if default == nil and not env.get(name) then return nil end
  local value = v[1](name, default, v[3])
  if v.min_len and #value < v.min_len then
    error(string.format("%s: expected at least %d characters, got %d", name, v.min_len, #value), 0)
  end
  return value
end

-- get(name) -> the value (the default when unset; nil when unset with none).
-- An undeclared name is a bug and raises; so does a malformed value, which
-- check() has refused at start.
function _M.get(name)
  return read(name)
end

-- need(name) -> the value; raises when it is unset with no default (a process
-- that needs it was refused at start by check(), so this is a misuse)
function _M.need(name)
  local v = read(name)
  if v == nil then error(name .. " is required but not set", 2) end
  return v
end

-- app_url() -> our public base URL, without a trailing slash
function _M.app_url()
  return (_M.need("APP_URL"):gsub("/+$", ""))
end

-- ---- the tenants' databases ----------------------------------------------------
-- A tenant's schema lives in one of these config vars' databases (its db_key,
-- which Heroku Connect is given too): CONNECT_DB_KEY, then TENANT_DATABASES.
-- Their names are the operator's, so they are read here, by name, and nowhere else.

local PG = { schemes = { "postgres", "postgresql" } }

-- database_keys() -> the config var names a tenant may be placed in, in order
function _M.database_keys()
  local keys, seen = {}, {}
  local list = { read("CONNECT_DB_KEY") }
  for _, k in ipairs(read("TENANT_DATABASES")) do list[#list + 1] = k end
  for _, k in ipairs(list) do
    if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
  end
  return keys
end

-- database_url(key) -> the URL in that config var | nil, err (not one of
-- database_keys(), or unset)
function _M.database_url(key)
  for _, k in ipairs(_M.database_keys()) do
    if k == key then
      if key == "DATABASE_URL" then return read("DATABASE_URL") or nil, "DATABASE_URL is not set" end
      local ok, url = pcall(env.url, key, nil, PG)
      if not ok then return nil, (tostring(url):gsub("^[^\n]-:%d+: ", "")) end
      if not url then return nil, key .. " is not set" end
      return url
    end
  end
  return nil, tostring(key) .. " is not one of CONNECT_DB_KEY, TENANT_DATABASES"
end

local function database_problems(problems)
  local ok, keys = pcall(_M.database_keys)
  if not ok then return end -- the malformed variable is named already
  for _, key in ipairs(keys) do
    if key ~= "DATABASE_URL" and not key:match("^[A-Z][A-Z0-9_]*$") then
      problems[#problems + 1] = "TENANT_DATABASES: " .. key .. " is not a config var name"
    elseif key ~= "DATABASE_URL" then
      local url, err = _M.database_url(key)
      if not url then problems[#problems + 1] = err .. " (named by CONNECT_DB_KEY or TENANT_DATABASES)" end
    end
  end
end

-- check(process) -> true | nil, problems (a list of lines, each naming a variable)
function _M.check(process)
  local names, problems = {}, {}
  for name in pairs(VARS) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local ok, value = pcall(read, name)
    if not ok then
      problems[#problems + 1] = (tostring(value):gsub("^[^\n]-:%d+: ", ""))
    elseif value == nil and VARS[name].need and VARS[name].need[process] then
      problems[#problems + 1] = name .. " is required but not set (" .. VARS[name].doc .. ")"
    end
  end
  if process ~= "clock" then database_problems(problems) end
  if #problems > 0 then return nil, problems end
  return true
end

return _M
