-- support.stack: the whole service as in production, on loopback: a private
-- Postgres database (migrated by `multiconnect migrate`), the sandbox standing in
-- for Heroku, Salesforce and SendGrid, and the web and worker processes of this
-- project's own scripts/, pointed at the sandbox by base URL.
--   local s = stack.start{ name = "onboarding", app_db = 1, sandbox_db = 2,
--                          knobs = {...}, env = {...} }
--   s.web_url, s.sandbox_url, s.pg (a connection to the private database), s.redis
--   s:post_install(body) / s:get_org(id) / s:stop()
local pg = require "mc.pg"
local redis = require "mc.redis"
local json = require "mc.json"
local http = require "mc.http"
local host = require "mc.host"
local daemon = require "support.daemon"
local server = require "support.server"
local sandbox = require "support.sandbox"
local worker = require "support.worker"
local proc = require "support.process"
local pg_db = require "support.pg_db"

local _M = {}

local Stack = {}
Stack.__index = Stack

_M.CALLBACK_SECRET = "spec-callback-secret-0123456789"
_M.ADMIN_TOKEN = "spec-admin-token-0123456789"
_M.KEYS = "k1:" .. string.rep("A", 43) .. "="

-- Default sandbox knobs: every person in the flow says yes at once, and the
-- asynchronous parts of Heroku take a moment, as they do.
_M.KNOBS = {
  sendgrid = { simulated_admin = true },
  salesforce = { auto_approve = true, client_id = "spec-client", client_secret = "spec-secret" },
  connect = { auto_approve = true, config_delay = 0.3, import_delay = 0.3, sync_delay = 0.3, recovery_delay = 0.3 },
  heroku = { provision_delay = 0.3 },
}

local function url_with_db(base, db)
  return (base:gsub("/%d*$", "")) .. "/" .. db
end

local function merge(into, from)
  for k, v in pairs(from or {}) do
    if type(v) == "table" and type(into[k]) == "table" then merge(into[k], v) else into[k] = v end
  end
  return into
end

-- start{name, app_db, sandbox_db, knobs, env, worker = false, tenants = {files}} -> stack
function _M.start(opts)
  local self = setmetatable({ name = opts.name, daemons = {} }, Stack)
  self.db_url = pg_db.create("mc_" .. opts.name)
  self.redis_url = url_with_db(assert(os.getenv("REDIS_URL")), opts.app_db)
  self.redis = assert(redis.connect(self.redis_url))
  assert(self.redis:call("FLUSHDB"))
  local sb_redis = assert(redis.connect(url_with_db(os.getenv("REDIS_URL"), opts.sandbox_db)))
  assert(sb_redis:call("FLUSHDB"))
  sb_redis:close()
  local knobs = merge(merge({}, _M.KNOBS), opts.knobs)
  local sb_env = merge({ DATABASE_URL = self.db_url, SANDBOX_CONFIG = json.encode(knobs) }, opts.sandbox_env)
  local sb, sb_url = sandbox.start(opts.sandbox_db, sb_env)
  self.sandbox, self.sandbox_url = sb, sb_url
  local port = server.free_port()
  self.web_url = "http://127.0.0.1:" .. port
  self.env = merge({
    DATABASE_URL = self.db_url, REDIS_URL = self.redis_url, PORT = tostring(port), WEB_BIND = "127.0.0.1",
    WEB_THREADS = "4", APP_URL = self.web_url, MC_RELOAD = "false",
    HEROKU_API_URL = sb_url .. "/heroku", HEROKU_CONNECT_URL = sb_url .. "/connect",
    SALESFORCE_LOGIN_URL = sb_url .. "/salesforce", SALESFORCE_SANDBOX_LOGIN_URL = sb_url .. "/salesforce-test",
    SENDGRID_API_URL = sb_url .. "/sendgrid", SENDGRID_API_KEY = "SG.spec", MAIL_FROM = "onboarding@isv.example",
    HEROKU_API_TOKEN = "spec-heroku-token", HEROKU_APP_NAME = "mc-spec",
    SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret",
    CALLBACK_SECRET = _M.CALLBACK_SECRET, ADMIN_TOKEN = _M.ADMIN_TOKEN, ENCRYPTION_KEYS = _M.KEYS,
    WORKER_CONCURRENCY = "10", WORKER_POLL_INTERVAL = "0.2",
    ONBOARDING_POLL_MIN = "0.2", ONBOARDING_POLL_MAX = "1", ONBOARDING_RETRY_MAX = "1",
    LOG_LEVEL = "info",
  }, opts.env)
  local migrate = proc.mc({ "migrate" }, { env = self.env })
  assert(migrate.code == 0, "migrate failed: " .. tostring(migrate.stdout) .. tostring(migrate.stderr))
  self.pg = assert(pg.connect(self.db_url))
  self.web = daemon.start({ command = "web", root = host.root, env = self.env })
  if not self.web:wait_log("msg=listening", 15) then
    local log = self.web:log(); self:stop(); error("web did not start:\n" .. log)
  end
  if opts.worker ~= false then self.worker = worker.start({ root = host.root, env = self.env }) end
  return self
end

function Stack:start_worker(env)
  self.worker = worker.start({ root = host.root, env = merge(merge({}, self.env), env) })
  return self.worker
end

-- sign(body[, ts]) -> headers for a signed callback, as the package's Apex sends it
function _M.sign(body, ts, secret)
  ts = tostring(ts or math.floor(host.time()))
  local crypto = require "mc.crypto"
  local sig = crypto.to_hex(crypto.hmac_sha256(secret or _M.CALLBACK_SECRET, ts .. "." .. body))
  return { ["Content-Type"] = "application/json", ["X-Timestamp"] = ts, ["X-Signature"] = sig }
end

-- post_install(doc | raw string[, headers]) -> res
function Stack:post_install(doc, headers)
  local body = type(doc) == "string" and doc or json.encode(doc)
  return assert(http.post(self.web_url .. "/organizations", { body = body, headers = headers or _M.sign(body) }))
end

function Stack:get_org(org_id)
  local res = assert(http.get(self.web_url .. "/organizations/" .. org_id,
    { headers = { Authorization = "Bearer " .. _M.ADMIN_TOKEN } }))
  return res.status == 200 and res:json() or nil, res
end

-- authenticate_url(org_id) -> the sign-in link of the first mail, as the workflow makes it
function Stack:authenticate_url(org_id)
  local ring = assert(require("mc.crypto").keyring(_M.KEYS))
  local t = ring:seal(org_id .. ":" .. (os.time() + 3600), "authenticate")
  return self.web_url .. "/authenticate?" .. http.encode_query({ org = org_id, t = t })
end

function Stack:state(org_id)
  local rows = assert(self.pg:query("SELECT state FROM organizations WHERE org_id = $1", org_id))
  return rows[1] and rows[1].state
end

-- wait_state(org_id, state, seconds) -> true | nil, the state it is in
function Stack:wait_state(org_id, want, seconds)
  local got
  local ok = proc.wait_for(function()
    got = self:state(org_id)
    return got == want or (got == "failed" and want ~= "failed")
  end, seconds or 60)
  if ok and got == want then return true end
  return nil, got
end

function Stack:knobs(doc)
  local res = assert(http.post(self.sandbox_url .. "/__sandbox/config", { json = doc }))
  assert(res.status == 200, "sandbox config: " .. res.status .. " " .. res.body)
end

function Stack:sandbox_state()
  local res = assert(http.get(self.sandbox_url .. "/__sandbox/state"))
  return res:json()
end

-- wait_sessions_dead(org_id): waits until the sandbox's Salesforce refuses
-- every access token it has issued for the org (there must be one), as it does
-- once they are token_ttl seconds old
function Stack:wait_sessions_dead(org_id)
  local prefix = "sandbox:salesforce:token:"
  proc.wait_for(function()
    local issued = 0
    for key, session in pairs(self:sandbox_state()) do
      if key:sub(1, #prefix) == prefix and session.org_id == org_id then
        issued = issued + 1
        local res = assert(http.get(self.sandbox_url .. "/salesforce/id/" .. org_id .. "/" .. session.user_id,
          { headers = { Authorization = "Bearer " .. key:sub(#prefix + 1) } }))
        if res.status == 200 then return false end
      end
    end
    return issued > 0
  end, 10, "the sandbox to refuse the Salesforce sessions of " .. org_id)
end

-- addons() -> the app's add-ons, as the Platform API lists them
function Stack:addons()
  local res = assert(http.get(self.sandbox_url .. "/heroku/apps/mc-spec/addons", { headers = {
    Accept = "application/vnd.heroku+json; version=3", Authorization = "Bearer spec-heroku-token" } }))
  assert(res.status == 200, res.body)
  return res:json()
end

-- addons_of(org_id) -> the add-ons onboarding made for that org (by their name)
function Stack:addons_of(org_id)
  local out = {}
  for _, a in ipairs(self:addons()) do
    if a.name:find(org_id:lower(), 1, true) then out[#out + 1] = a end
  end
  return out
end

function Stack:logs()
  return "--- web ---\n" .. self.web:log() .. "\n--- worker ---\n" .. (self.worker and self.worker:log() or "")
    .. "\n--- sandbox ---\n" .. self.sandbox:log()
end

function Stack:stop()
  for _, d in ipairs({ self.worker, self.web, self.sandbox }) do pcall(d.stop, d) end
  if self.pg then self.pg:close() end
  if self.redis then self.redis:close() end
end

return _M
