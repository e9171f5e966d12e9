-- mc.conns: this Lua state's one Postgres connection (DATABASE_URL) and one
-- Redis connection (REDIS_TLS_URL or REDIS_URL), each made on first use and kept
-- (mc.pg and mc.redis reconnect by themselves after a drop; a reload builds new
-- states, hence new connections). The jobs framework, the application and
-- /health share these, instead of each caching its own.
local pg = require "mc.pg"
local redis = require "mc.redis"

local _M = {}

local held = {}

local CONNECT = {
  pg = function() return pg.connect() end,
  redis = function() return redis.connect() end,
}

local function get(kind)
  if held[kind] then return held[kind] end
  local c, err = CONNECT[kind]()
  if not c then return nil, kind == "pg" and ("postgres: " .. err) or ("redis: " .. err) end
  held[kind] = c
  return c
end

-- pg() -> conn | nil, err
function _M.pg() return get("pg") end

-- redis() -> conn | nil, err
function _M.redis() return get("redis") end

-- pg_at(url) -> conn | nil, err: this state's connection to another Postgres
-- (a tenant's database), made on first use and kept, one per URL. The URL of
-- DATABASE_URL gets pg()'s own.
local others = {}
function _M.pg_at(url)
  if type(url) ~= "string" then error("conns.pg_at: url must be a string", 2) end
  if url == os.getenv("DATABASE_URL") then return get("pg") end
  if others[url] then return others[url] end
  local c, err = pg.connect(url)
  if not c then return nil, "postgres: " .. err end
  others[url] = c
  return c
end

-- use(kind, c): make c this state's connection of that kind (another database,
-- a test server); nil forgets it.
function _M.use(kind, c)
  if not CONNECT[kind] then error("conns.use: kind must be \"pg\" or \"redis\"", 2) end
  held[kind] = c
end

return _M
