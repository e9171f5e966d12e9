-- support.web_app: this project's own `multiconnect web` on a private database
-- (migrated by `multiconnect migrate`) and a Redis database of its own, with no
-- sandbox and no worker: for specs of the operator's HTTP surface (the API and
-- the dashboard) that seed tenants straight into the tables.
--   local app = web_app.start{ name = "mc_operator_api", redis = 23, env = {...} }
--   app.url, app.pg, app.redis, app:org(id, fields), app:request(method, path, opts), app:stop()
local pg = require "mc.pg"
local redis = require "mc.redis"
local json = require "mc.json"
local socket = require "socket"
local host = require "mc.host"
local daemon = require "support.daemon"
local server = require "support.server"
local proc = require "support.process"
local pg_db = require "support.pg_db"
local stack = require "support.stack"

local _M = {}

local App = {}
App.__index = App

local function redis_url(db)
  return (assert(os.getenv("REDIS_URL")):gsub("/%d*$", "")) .. "/" .. db
end

-- start{name, redis, env} -> app, once web listens
function _M.start(opts)
  local self = setmetatable({ name = opts.name }, App)
  self.db_url = pg_db.create(opts.name)
  self.redis_url = redis_url(opts.redis)
  self.redis = assert(redis.connect(self.redis_url))
  assert(self.redis:call("FLUSHDB"))
  self.port = server.free_port()
  self.url = "http://127.0.0.1:" .. self.port
  self.env = { DATABASE_URL = self.db_url, REDIS_URL = self.redis_url, PORT = tostring(self.port),
    WEB_BIND = "127.0.0.1", WEB_THREADS = "2", APP_URL = self.url, MC_RELOAD = "false",
    ENCRYPTION_KEYS = stack.KEYS, SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret",
    ADMIN_TOKEN = stack.ADMIN_TOKEN, LOG_LEVEL = "warn" }
  for k, v in pairs(opts.env or {}) do self.env[k] = v or nil end
  local migrate = proc.mc({ "migrate" }, { env = self.env })
  assert(migrate.code == 0, "migrate failed: " .. migrate.stdout .. migrate.stderr)
  self.pg = assert(pg.connect(self.db_url))
  self.web = daemon.start({ command = "web", root = host.root, env = self.env })
  if not server.wait_accepting(self.port, 15, function() return self.web:alive() end) then
    local log = self.web:log()
    self:stop()
    error("web did not start:\n" .. log)
  end
  return self
end

-- org(org_id, fields) -> inserts a tenant; fields: any columns, and since
-- (seconds in its state), age (seconds since created and updated)
function App:org(org_id, f)
  f = f or {}
  assert(self.pg:query([[INSERT INTO organizations (org_id, org_name, admin_email, state, environment,
      login_domain, failed_step, last_error, connection_id, region_url, schema_name, state_since,
      created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now() - make_interval(secs => $12),
      now() - make_interval(secs => $13), now() - make_interval(secs => $13))]],
    org_id, f.org_name or "Acme", f.admin_email or "admin@acme.example", f.state or "received",
    f.environment or "production", f.login_domain or mc.null, f.failed_step or mc.null, f.last_error or mc.null,
    f.connection_id or mc.null, f.region_url or mc.null, f.schema_name or mc.null, f.since or 0, f.age or 0))
end

function App:clear()
  assert(self.pg:exec("DELETE FROM organizations"))
  assert(self.redis:call("FLUSHDB"))
end

-- request(method, path, {headers, body}) -> {status, headers, body, json = decoded|nil}
function App:request(method, path, opts)
  opts = opts or {}
  local c = assert(socket.connect("127.0.0.1", self.port))
  c:settimeout(10)
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close" }
  for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if opts.body then lines[#lines + 1] = "Content-Length: " .. #opts.body end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")))
  local res = assert(server.read_response(c, method == "HEAD"))
  c:close()
  if (res.headers["content-type"] or ""):find("application/json", 1, true) then res.json = json.decode(res.body) end
  return res
end

function App:logs() return self.web:log() end

function App:stop()
  if self.web then pcall(self.web.stop, self.web) end
  if self.pg then self.pg:close() end
  if self.redis then self.redis:close() end
  pg_db.drop(self.name)
end

return _M
