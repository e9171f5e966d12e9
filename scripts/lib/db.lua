-- lib.db: this Lua state's Postgres and Redis connections, as the application
-- asks for them (mc.conns holds them, shared with the jobs framework).
--   db.conn()  -> the Postgres connection (DATABASE_URL): the app's own tables | nil, err
--   db.redis() -> the Redis connection (REDIS_TLS_URL or REDIS_URL) | nil, err
--   db.tenant(org) -> the connection to the database holding the org's schema
--                     (its db_key; CONNECT_DB_KEY when none is recorded) | nil, err
--   db.key(org) -> that db_key
--   db.one(conn:query(...)) -> the first row | false (none) | nil, err
local conns = require "mc.conns"
local config = require "config"

local _M = {}

_M.conn = conns.pg
_M.redis = conns.redis

function _M.key(org)
  return type(org.db_key) == "string" and org.db_key or config.get("CONNECT_DB_KEY")
end

function _M.tenant(org)
  local key = _M.key(org)
  if key == "DATABASE_URL" then return conns.pg() end
  local url, err = config.database_url(key)
  if not url then return nil, "the tenant's database: " .. err end
  return conns.pg_at(url)
end

function _M.one(rows, err)
  if not rows then return nil, err end
  return rows[1] or false
end

-- use(c): make c this state's Postgres connection (tests).
function _M.use(c) conns.use("pg", c) end

return _M
