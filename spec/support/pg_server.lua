-- support.pg_server: a Postgres server of a spec's own (tools/services with
-- MC_VAR in a scratch folder), for what one server cannot show: a tenant on a
-- second database server, a restarted server.
--   local srv = pg_server.start()   -- srv.url: its DATABASE_URL
--   srv:database("mc_x")            -- a fresh database on it -> its URL
--   srv:stop()                      -- stops it, removes its files
local pg = require "mc.pg"
local host = require "mc.host"
local proc = require "support.process"

local _M = {}

local Server = {}
Server.__index = Server

local SERVICES = host.root .. "/tools/services"

local function svc(dir, ...)
  local r = proc.run({ SERVICES, ... }, { env = { MC_VAR = dir, DATABASE_URL = "", REDIS_URL = "" } })
  assert(r.code == 0, "tools/services " .. table.concat({ ... }, " ") .. ": " .. tostring(r.stderr))
  return r.stdout
end

function _M.start()
  local dir, cleanup = proc.tmpdir()
  local url = svc(dir, "start", "postgres"):match("DATABASE_URL='([^']+)'")
  assert(url, "the private server's URL")
  return setmetatable({ dir = dir, cleanup = cleanup, url = url }, Server)
end

function Server:database(name)
  local admin = assert(pg.connect(self.url))
  admin:query("DROP DATABASE IF EXISTS " .. pg.quote_ident(name) .. " WITH (FORCE)")
  assert(admin:query("CREATE DATABASE " .. pg.quote_ident(name)))
  admin:close()
  local base, query = self.url:match("^([^?]*)(.*)$")
  return base:gsub("/[^/]*$", "/" .. name) .. query
end

function Server:stop()
  local f = io.open(self.dir .. "/services/pg.dir")
  local pgdir = f and f:read("l")
  if f then f:close() end
  svc(self.dir, "stop", "postgres")
  if pgdir and pgdir:find("^/tmp/") then os.execute("rm -rf " .. proc.quote(pgdir)) end
  self.cleanup()
end

return _M
