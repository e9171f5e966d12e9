-- health (scripts/health.lua), called in-process: 200 when this state's Postgres
-- and Redis connections (lib.db, mc.conns) both answer, 503 naming what failed
-- otherwise: a closed connection, an unreachable server, one not configured.
local pg = require "mc.pg"
local redis = require "mc.redis"
local conns = require "mc.conns"
local db = require "lib.db"
local health = require "health"
local env_vars = require "support.env_vars"
local web_request = require "support.web_request"

describe("health", function()
  local config = env_vars.layered({})
  local conn, r

  before_each(function()
    config:set()
    conn = assert(pg.connect())
    r = assert(redis.connect())
    db.use(conn)
    conns.use("redis", r)
  end)
  after_each(function()
    config:restore()
    db.use(nil)
    conns.use("redis", nil)
    conn:close()
    r:close()
  end)

  local function show()
    local req = web_request.new{ path = "/health", id = "req-health-1" }
    local status, body = health.show(req)
    assert.equal("req-health-1", body.request_id)
    return status, body
  end

  it("200 when both answer, with the versions this process runs with", function()
    local status, body = show()
    assert.equal(200, status)
    assert.same({ status = "ok", checks = { postgres = "ok", redis = "ok" } },
      { status = body.status, checks = body.checks })
    assert.same(mc.host.versions(), body.versions)
  end)

  it("503 when Redis's connection is closed; Postgres still reported ok", function()
    r:close()
    local status, body = show()
    assert.same({ 503, "degraded", { postgres = "ok", redis = "closed" } }, { status, body.status, body.checks })
  end)

  it("503 when Postgres's connection is closed", function()
    conn:close()
    local status, body = show()
    assert.same({ 503, "degraded", { postgres = "closed", redis = "ok" } }, { status, body.status, body.checks })
  end)

  it("503 when Postgres is unreachable: libpq's reason, without the postgres: prefix", function()
    db.use(nil)
    config:set({ DATABASE_URL = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2" })
    local status, body = show()
    assert.equal(503, status)
    assert.matches("refused", body.checks.postgres)
    assert.is_nil(body.checks.postgres:match("^postgres: "))
    assert.equal("ok", body.checks.redis)
  end)

  it("503 when neither is configured", function()
    config:set({ DATABASE_URL = false, REDIS_URL = false, REDIS_TLS_URL = false })
    local status, body = show()
    assert.same({ 503, { postgres = "not configured", redis = "not configured" } }, { status, body.checks })
  end)
end)
