-- support.isv: what an ISV engineer's spec of a tenant override or a job needs,
-- on the real code paths: the org's hooks from scripts/tenants/, its mapping as
-- onboarding builds it, mail through mc.mail to an SMTP sink, a database with the
-- org and its schema, a clock to set, and jobs run inline.
--
--   local isv = require "support.isv"
--   local t = isv.tenant("00D5g000004XyzAEAS")          -- hooks only, no database
--   local doc = assert(t:mapping())                      -- validated, as imported
--   local box <close> = isv.mailbox()                    -- mails sent from now on
--   assert(t:notify("active", { schema_name = "x" }))    -- email hook + template + mc.mail
--   local m = box:last()                                 -- {to =, subject =, text =}
--   local db <close> = isv.database("mc_spec_acme")      -- migrated; t:insert(db) adds the
--   t:insert(db)                                         -- org, active, and its schema's tables
--   local clock <close> = isv.clock(1700000000)          -- mc.host.time() and os.time()
--   assert(isv.job("social.tenant", { t.org_id }, db))   -- perform, inline, on db
-- The sandbox (Heroku, Connect, Salesforce, X) on demand: support.sandbox_client.
local host = require "mc.host"
local json = require "mc.json"
local conns = require "mc.conns"
local jobs = require "mc.jobs"
local proc = require "support.process"
local daemon = require "support.daemon"
local server = require "support.server"
local env_vars = require "support.env_vars"
local tenant_db = require "support.tenant_db"

local _M = {}

-- ---- the tenant ------------------------------------------------------------------

local Tenant = {}
Tenant.__index = Tenant

-- tenant(org_id[, fields]) -> t: the org as hooks see it (fields override the
-- defaults: org_name, admin_email, environment, state).
function _M.tenant(org_id, fields)
  local t = { org_id = org_id, org_name = "Acme", admin_email = "admin@acme.example",
    environment = "production", state = "active" }
  for k, v in pairs(fields or {}) do t[k] = v end
  return setmetatable({ org_id = org_id, row = t }, Tenant)
end

-- t:hook(name, ...) -> true, results... | nil, err (lib.hooks.run)
function Tenant:hook(name, ...)
  return require("lib.hooks").run(self.row, name, ...)
end

-- t:schema_name() -> the schema | nil, err (checked as the step checks it)
function Tenant:schema_name()
  local ok, name = self:hook("schema_name")
  if not ok then return nil, name end
  local problem = require("lib.tenant").schema_problem(name)
  if problem then return nil, problem end
  return name
end

-- t:mapping() -> the document its connection would import | nil, err
function Tenant:mapping()
  local mapping = require "onboarding.mapping"
  local base, err = mapping.base(self.org_id)
  if not base then return nil, err end
  local ok, doc = self:hook("mapping", base)
  if not ok then return nil, doc end
  local valid, verr = mapping.validate(doc)
  if not valid then return nil, verr end
  return doc
end

-- t:notify(kind, vars) -> message id | "suppressed" | nil, err: the mail the
-- onboarding sends, through the email hook and mc.mail (to isv.mailbox()).
function Tenant:notify(kind, vars)
  local org = { org_name = self.row.org_name, admin_email = self.row.admin_email, tenant = self.row }
  return require("onboarding.notify").send(org, kind, vars or {})
end

-- t:insert(db) -> t: the org in db's organizations table, in state row.state,
-- with its schema (the name its hook gives) and the tables Connect would make.
function Tenant:insert(db)
  local schema = assert(self:schema_name())
  db.tdb:tenant(schema)
  db.tdb:org(self.org_id, { state = self.row.state, schema_name = schema })
  self.row.schema_name = schema
  return self
end

-- ---- a database --------------------------------------------------------------------

local Database = {}
Database.__index = Database

-- database(name) -> db: a private, migrated database on the test Postgres
-- (db.url, db.conn), made this state's connection (mc.conns) until closed.
function _M.database(name)
  local tdb = tenant_db.create(name)
  local previous = conns.pg()
  conns.use("pg", tdb.conn)
  return setmetatable({ tdb = tdb, url = tdb.url, conn = tdb.conn, previous = previous }, Database)
end

function Database:close()
  conns.use("pg", self.previous)
  self.tdb:drop()
end
Database.__close = Database.close

-- ---- mail ----------------------------------------------------------------------------

local Mailbox = {}
Mailbox.__index = Mailbox

-- mailbox() -> box: an SMTP sink (spec/support/smtp_sink.lua, its own process)
-- that mc.mail sends to until box:close().
function _M.mailbox()
  local port, record = server.free_port(), os.tmpname()
  local sink = daemon.start({ command = "run " .. proc.quote(host.root .. "/spec/support/smtp_sink.lua") .. " "
    .. port .. " " .. proc.quote(record), root = host.root })
  assert(sink:wait_log("msg=listening", 10), sink:log())
  local restore = env_vars.set({ SMTP_URL = "smtp://127.0.0.1:" .. port, SMTP_TLS = "none",
    MAIL_FROM = "onboarding@isv.example", SENDGRID_API_KEY = false })
  return setmetatable({ sink = sink, record = record, restore = restore }, Mailbox)
end

-- box:all() -> every mail received, oldest first: {to, subject, text, raw}
function Mailbox:all()
  local out = {}
  local f = io.open(self.record)
  if not f then return out end
  for line in f:lines() do
    local m = json.decode(line)
    local data = m.data:gsub("\r\n", "\n")
    out[#out + 1] = { to = m.rcpt[1], subject = data:match("\nSubject: ([^\n]*)") or data:match("^Subject: ([^\n]*)"),
      raw = data, text = data:match("Content%-Type: text/plain.-\n\n(.-)\n%-%-") }
  end
  f:close()
  return out
end

function Mailbox:last()
  local all = self:all()
  return all[#all]
end

function Mailbox:close()
  self.restore()
  self.sink:stop()
  os.remove(self.record)
end
Mailbox.__close = Mailbox.close

-- ---- time and jobs ---------------------------------------------------------------------

-- clock(epoch) -> c: mc.host.time() and os.time() answer epoch (c:set(t),
-- c:advance(s)) until c:close(). Durations (mc.host.now) keep running.
function _M.clock(epoch)
  local real_time, real_os = host.time, os.time
  local c = { now = epoch }
  host.time = function() return c.now end
  os.time = function(t) if t then return real_os(t) end return math.floor(c.now) end -- luacheck: ignore
  function c.set(_, t) c.now = t end
  function c.advance(_, s) c.now = c.now + s end
  function c.close() host.time, os.time = real_time, real_os end -- luacheck: ignore
  return setmetatable(c, { __close = c.close })
end

-- job(name, args[, db]) -> true | nil, err: the job's perform, inline (as
-- `run jobs:NAME` runs it), on db's connection when given.
function _M.job(name, args, db)
  if db then conns.use("pg", db.conn) end
  local ok, err = jobs.perform({ class = name, args = args, jid = "spec-" .. name },
    { inline = true, jid = "spec-" .. name, class = name, log = require("mc.log").with({ class = name }) }, 60)
  return ok, err
end

return _M
