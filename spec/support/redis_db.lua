-- support.redis_db: a Redis database of its own for a spec file, on the harness's
-- Redis (REDIS_URL), emptied before and after so that counters and queue lists
-- start at zero and nothing is left behind.
--
--   local db = redis_db.open(13)   -- db.url for the spawned binary, db.r to look
--   ...
--   db:close()                     -- FLUSHDB, then close
local redis = require "mc.redis"

local _M = {}

local Db = {}
Db.__index = Db

function _M.open(n)
  local base = assert(os.getenv("REDIS_URL"), "REDIS_URL is set by make test")
  local url = base:gsub("/%d*$", "") .. "/" .. n
  local r = assert(redis.connect(url))
  assert(r:call("FLUSHDB"))
  return setmetatable({ url = url, r = r }, Db)
end

-- env for the spawned binary: this database only (no TLS URL taking precedence)
function Db:env(extra)
  local env = { REDIS_URL = self.url, REDIS_TLS_URL = false }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

function Db:close()
  self.r:call("FLUSHDB")
  self.r:close()
end

return _M
