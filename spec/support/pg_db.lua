-- support.pg_db: a Postgres database of its own for a spec file, on the test
-- server (DATABASE_URL), created empty and dropped after.
--
--   local url = pg_db.create("mc_console")   -- its URL, for the spawned binary
--   ...
--   pg_db.drop("mc_console")
local pg = require "mc.pg"

local _M = {}

-- url(name) -> DATABASE_URL with its database name replaced (the query kept)
function _M.url(name)
  local url = assert(os.getenv("DATABASE_URL"), "DATABASE_URL is not set")
  local base, query = url:match("^([^?]*)(.*)$")
  return (base:gsub("/[^/]*$", "/" .. name)) .. query
end

local function on_server(sql)
  local admin <close> = assert(pg.connect())
  return admin:exec(sql)
end

-- create(name) -> url: the database, new and empty (one a previous run left is
-- dropped first)
function _M.create(name)
  _M.drop(name)
  assert(on_server("CREATE DATABASE " .. pg.quote_ident(name)))
  return _M.url(name)
end

-- drop(name): drops the database, whoever is still connected to it
function _M.drop(name)
  on_server("DROP DATABASE IF EXISTS " .. pg.quote_ident(name) .. " WITH (FORCE)")
end

return _M
