-- support.onboarding_fixture: what the in-process onboarding specs share. In a
-- describe (busted's hooks come from the spec's _ENV), its setup makes:
--   a private database migrated by `multiconnect migrate` (support.tenant_db),
--   made this Lua state's Postgres connection (lib.db), as the worker's is;
--   a second connection to it, `other`: another runner, an uninstall, a person;
--   a Redis database of its own, made the jobs' connection (queue:default, schedule);
--   the project's sandbox (Heroku, Connect, Salesforce, SendGrid) when asked for;
--   the configuration the onboarding reads (support.env_vars), sandbox URLs included.
-- Before each test the organizations, their events and the Redis database are
-- emptied and the configuration is set afresh (opts.env on top of the defaults).
--   local fx = fixture.new(_ENV, { db = "mc_spec_workflow", redis = 29, sandbox = 30, env = {...} })
--   fx:org(ORG, { state = "received", progress = { failures = 1 }, due = 30, since = 60 }) -> row
--   fx:row(ORG), fx:events(ORG), fx:queued(), fx:scheduled(), fx:claimable(row), fx:closed()
--   fx.config:set{ ONBOARDING_MAX_ATTEMPTS = "2" }   -- this test's configuration
--   fx:background(lua_source, "ready") -> a `multiconnect run` daemon on the database
local json = require "mc.json"
local pg = require "mc.pg"
local host = require "mc.host"
local db = require "lib.db"
local jobs = require "mc.jobs"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local workflow = require "onboarding.workflow"
local tenant_db = require "support.tenant_db"
local redis_db = require "support.redis_db"
local env_vars = require "support.env_vars"
local sandbox_client = require "support.sandbox_client"
local daemon = require "support.daemon"
local proc = require "support.process"
local stack = require "support.stack"

local _M = {}

local Fixture = {}
Fixture.__index = Fixture

-- Delays long enough to tell apart (a first poll of 8..12 s, a retry of 12.8..19.2 s).
_M.ENV = {
  ONBOARDING_POLL_MIN = "10", ONBOARDING_POLL_MAX = "100", ONBOARDING_RETRY_MAX = "300",
  ONBOARDING_MAX_ATTEMPTS = "3", ONBOARDING_WAIT_LIMIT = "3600",
  HEROKU_API_TOKEN = "spec-heroku-token", HEROKU_APP_NAME = "mc-spec", APP_URL = "https://mc.example",
  ENCRYPTION_KEYS = stack.KEYS, SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret",
  SENDGRID_API_KEY = "SG.spec", MAIL_FROM = "onboarding@isv.example", SMTP_URL = false,
  FORCE_NAMESPACE = false, TENANTS_DIR = false, CONNECT_DB_KEY = false,
}

local function sandbox_env(url)
  return { HEROKU_API_URL = url .. "/heroku", HEROKU_CONNECT_URL = url .. "/connect",
    SALESFORCE_LOGIN_URL = url .. "/salesforce", SENDGRID_API_URL = url .. "/sendgrid" }
end

-- new(spec_env, opts) -> fixture; opts.db (database name), opts.redis (its number),
-- opts.sandbox (the sandbox's Redis database number, or nil: no sandbox),
-- opts.knobs (the sandbox's knobs after each reset), opts.env (configuration)
function _M.new(spec, opts)
  local self = setmetatable({ opts = opts }, Fixture)
  self.config = env_vars.layered(function()
    local env = {}
    for k, v in pairs(_M.ENV) do env[k] = v end
    for k, v in pairs(self.sb and sandbox_env(self.sb.url) or {}) do env[k] = v end
    for k, v in pairs(opts.env or {}) do env[k] = v end
    return env
  end)
  spec.setup(function() self:start() end)
  spec.teardown(function() self:stop() end)
  spec.before_each(function() self:reset() end)
  spec.after_each(function()
    self.config:restore()
    db.use(nil)
    jobs.use(nil)
  end)
  return self
end

function Fixture:start()
  self.tdb = tenant_db.create(self.opts.db)
  self.conn = self.tdb.conn
  self.other = assert(pg.connect(self.tdb.url))
  self.rdb = redis_db.open(self.opts.redis)
  self.r = self.rdb.r
  if self.opts.sandbox then
    self.sb = sandbox_client.start(self.opts.sandbox, { DATABASE_URL = self.tdb.url })
  end
end

function Fixture:stop()
  if self.sb then self.sb:stop() end
  self.rdb:close()
  self.other:close()
  self.tdb:drop()
end

function Fixture:reset()
  if self.conn:status() ~= "idle" then self.conn:exec("ROLLBACK") end
  if self.other:status() ~= "idle" then self.other:exec("ROLLBACK") end
  assert(self.other:exec("SELECT pg_advisory_unlock_all()"))
  assert(self.conn:exec("SELECT pg_advisory_unlock_all()"))
  assert(self.conn:exec("DELETE FROM organizations"))
  assert(self.r:call("FLUSHDB"))
  if self.sb then self.sb:reset(self.opts.knobs) end
  self.config:set()
  db.use(self.conn)
  jobs.use(self.r)
end

-- org(org_id, fields) -> the row as orgs.get reads it. fields: any columns
-- (progress a table), and due (seconds until the step is due; default 0, none in
-- a final or person state), since (seconds the org has been in its state).
function Fixture:org(org_id, fields)
  local f = { org_id = org_id, org_name = "Acme", admin_email = "admin@acme.example" }
  for k, v in pairs(fields or {}) do f[k] = v end
  local due, since = f.due, f.since or 0
  if due == nil and (states.FINAL[f.state] or states.PERSON[f.state]) then due = false end
  f.due, f.since = nil, nil
  local cols, vals, args = {}, {}, {}
  local keys = {}
  for k in pairs(f) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = f[k]
    args[#args + 1] = k == "progress" and json.encode(v) or v
    cols[#cols + 1] = k
    vals[#vals + 1] = "$" .. #args .. (k == "progress" and "::jsonb" or "")
  end
  args[#args + 1] = since
  cols[#cols + 1] = "state_since"
  vals[#vals + 1] = "now() - make_interval(secs => $" .. #args .. ")"
  if due ~= false then
    args[#args + 1] = due or 0
    cols[#cols + 1] = "next_attempt_at"
    vals[#vals + 1] = "now() + make_interval(secs => $" .. #args .. ")"
  end
  assert(self.conn:query("INSERT INTO organizations (" .. table.concat(cols, ", ") .. ") VALUES ("
    .. table.concat(vals, ", ") .. ")", table.unpack(args, 1, #args)))
  return self:row(org_id)
end

-- row(org_id) -> the row as orgs.get reads it | false (no such org)
function Fixture:row(org_id)
  local row, err = orgs.get(self.other, org_id)
  assert(row ~= nil, err)
  return row
end

-- events(org_id) -> {{kind, from_state, to_state, details}...}, oldest first
function Fixture:events(org_id)
  local out = {}
  for i, e in ipairs(assert(orgs.events(self.other, org_id))) do
    out[i] = { e.kind, e.from_state, e.to_state, e.details }
  end
  return out
end

-- closed() -> a connection to the database, closed: a database failure
function Fixture:closed()
  local c = assert(pg.connect(self.tdb.url))
  c:close()
  return c
end

-- Seconds from the database's now until the row's next_attempt_at (nil: none).
function Fixture:due_in(org_id)
  local rows = assert(self.other:query([[SELECT extract(epoch FROM next_attempt_at - now())::float8 AS s
    FROM organizations WHERE org_id = $1]], org_id))
  return rows[1].s ~= mc.null and rows[1].s or nil
end

-- queued() -> the jobs of queue:default, oldest first, decoded
function Fixture:queued()
  local out = {}
  local raw = assert(self.r:call("LRANGE", "queue:default", 0, -1))
  for i = #raw, 1, -1 do out[#out + 1] = json.decode(raw[i]) end
  return out
end

-- scheduled() -> {{job, in = seconds from now}...}, soonest first
function Fixture:scheduled()
  local out = {}
  local raw = assert(self.r:call("ZRANGE", "schedule", 0, -1, "WITHSCORES"))
  for i = 1, #raw, 2 do
    out[#out + 1] = { job = json.decode(raw[i]), ["in"] = tonumber(raw[i + 1]) - host.time() }
  end
  return out
end

-- claimable(row) -> true when another connection can take the org's claim now
-- (it gives it back at once)
function Fixture:claimable(row)
  local got, err = workflow.claim(self.other, row)
  assert(got ~= nil, err)
  if got then workflow.release(self.other, row) end
  return got
end

-- background(source, ready) -> a `multiconnect run` of the Lua source on the
-- fixture's database and Redis, once its output shows `ready`; :stop() it.
function Fixture:background(source, ready)
  local dir, cleanup = proc.tmpdir()
  local path = proc.write(dir .. "/background.lua", source)
  local env = { DATABASE_URL = self.tdb.url, REDIS_URL = self.rdb.url, LOG_LEVEL = "error" }
  local d = daemon.start({ command = "run " .. proc.quote(path), root = host.root, env = env })
  local stop = d.stop
  function d.stop(s)
    local status = stop(s)
    cleanup()
    return status
  end
  if not d:wait_log(ready, 10) then
    local log = d:log()
    d:stop()
    error("background script did not get ready:\n" .. log)
  end
  return d
end

-- logged(fn, ...) -> what mc.log wrote while fn ran, then fn's results
function _M.logged(fn, ...)
  local real, tmp = io.stdout, assert(io.tmpfile())
  io.stdout = tmp -- luacheck: ignore
  local res = table.pack(pcall(fn, ...))
  io.stdout = real -- luacheck: ignore
  tmp:seek("set")
  local out = tmp:read("a")
  tmp:close()
  if not res[1] then error(res[2], 0) end
  return out, table.unpack(res, 2, res.n)
end

return _M
