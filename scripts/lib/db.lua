-- lib.db: this Lua state's Postgres and Redis connections, as the application
-- asks for them (mc.conns holds them, shared with the jobs framework).
--   db.conn()  -> the Postgres connection (DATABASE_URL) | nil, err
--   db.redis() -> the Redis connection (REDIS_TLS_URL or REDIS_URL) | nil, err
local conns = require "mc.conns"

local _M = {}

_M.conn = conns.pg
_M.redis = conns.redis

-- use(c): make c this state's Postgres connection (tests).
function _M.use(c) conns.use("pg", c) end

return _M
