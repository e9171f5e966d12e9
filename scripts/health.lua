-- GET /health: the versions this process runs with, and whether Postgres and
-- Redis answer, over this state's own connections (lib.db: the ones every
-- request uses, so the probe sees what the requests see). 200 when both do,
-- 503 otherwise, so a probe or an operator sees at once what is wrong.
local config = require "config"
local db = require "lib.db"

local _M = {}

local function check_postgres()
  if not config.get("DATABASE_URL") then return "not configured" end
  local conn, err = db.conn()
  if not conn then return (err:gsub("^postgres: ", "")) end
  local rows, qerr = conn:query("select 1 as ok")
  if not rows then return qerr end
  return "ok"
end

local function check_redis()
  if not config.get("REDIS_URL") then return "not configured" end
  local r, err = db.redis()
  if not r then return (err:gsub("^redis: ", "")) end
  local pong, perr = r:call("PING")
  if pong ~= "PONG" then return perr or "unexpected reply" end
  return "ok"
end

function _M.show(req)
  local checks = { postgres = check_postgres(), redis = check_redis() }
  local healthy = checks.postgres == "ok" and checks.redis == "ok"
  return healthy and 200 or 503, {
    status = healthy and "ok" or "degraded",
    checks = checks,
    versions = mc.host.versions(),
    request_id = req.id,
  }
end

return _M
