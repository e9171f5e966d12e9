-- GET /health: the versions this process runs with, and whether Postgres and
-- Redis answer (within a second each). 200 when both do, 503 otherwise, so a
-- probe or an operator sees at once what is wrong.
local pg = require "mc.pg"
local redis = require "mc.redis"

local _M = {}

local TIMEOUT = 1

local function check_postgres()
  local url = os.getenv("DATABASE_URL")
  if not url or url == "" then return "not configured" end
  local conn, err = pg.connect(url, { connect_timeout = TIMEOUT, statement_timeout = TIMEOUT * 1000 })
  if not conn then return err end
  local rows, qerr = conn:query("select 1 as ok")
  conn:close()
  if not rows then return qerr end
  return "ok"
end

local function check_redis()
  if not (os.getenv("REDIS_TLS_URL") or os.getenv("REDIS_URL")) then return "not configured" end
  local r, err = redis.connect(nil, { connect_timeout = TIMEOUT, timeout = TIMEOUT })
  if not r then return err end
  local pong, perr = r:call("PING")
  r:close()
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
