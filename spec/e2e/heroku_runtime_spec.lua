-- The real binary on Heroku's terms (docs/external-apis.md §6): web binds $PORT,
-- reaches Postgres through a DATABASE_URL that says sslmode=require, and Redis
-- through REDIS_TLS_URL (preferred over REDIS_URL) whose certificate is
-- self-signed, as Heroku Redis's is; worker and clock name themselves after
-- $DYNO. SIGTERM is in web_lifecycle_spec, worker_spec and clock_spec.
local daemon = require "support.daemon"
local host = require "mc.host"
local http = require "socket.http"
local json = require "mc.json"
local pg = require "mc.pg"
local proc = require "support.process"
local redis = require "mc.redis"
local redis_db = require "support.redis_db"
local redis_server = require "support.redis_server"
local server = require "support.server"

local function with_param(url, param)
  return url .. (url:find("?", 1, true) and "&" or "?") .. param
end

-- what `web` needs besides Postgres and Redis
local function web_env(port)
  return { PORT = tostring(port), WEB_BIND = "127.0.0.1", WEB_THREADS = "2", MC_RELOAD = "0",
    DYNO = "web.1", APP_URL = "http://127.0.0.1:" .. port, ENCRYPTION_KEYS = "k1:" .. string.rep("A", 43) .. "=",
    SALESFORCE_CLIENT_ID = "heroku-spec", SALESFORCE_CLIENT_SECRET = "heroku-spec" }
end

describe("web on Heroku's terms", function()
  local dir, cleanup, tls_redis, web
  setup(function()
    dir, cleanup = proc.tmpdir()
    tls_redis = redis_server.start(dir, { tls = redis_server.self_signed(dir), args = { "--requirepass", "tls-pw" } })
  end)
  teardown(function()
    tls_redis.stop()
    cleanup()
  end)
  after_each(function() if web then web:stop() end end)

  it("serves /health on $PORT over Postgres with sslmode=require and Redis at REDIS_TLS_URL", function()
    local port, nobody = server.free_port(), server.free_port()
    local app_name = "heroku-spec-" .. math.random(1, 1e9)
    local env = web_env(port)
    env.DATABASE_URL = with_param(with_param(os.getenv("DATABASE_URL"), "sslmode=require"),
      "application_name=" .. app_name)
    env.REDIS_URL = "redis://127.0.0.1:" .. nobody -- nothing listens: it must not be used
    env.REDIS_TLS_URL = "rediss://:tls-pw@127.0.0.1:" .. tls_redis.port
    web = daemon.start({ command = "web", root = host.root, env = env })
    assert.is_true(server.wait_accepting(port, 15, function() return web:alive() end), web:log())
    -- the port may accept a moment before the line is written
    assert.truthy(web:wait_log("at=info msg=listening port=" .. port, 10), web:log())

    local body, code = http.request("http://127.0.0.1:" .. port .. "/health")
    assert.equal(200, code, body)
    assert.same({ postgres = "ok", redis = "ok" }, json.decode(body).checks)

    -- web's own Postgres connections are TLS ones
    local conn = assert(pg.connect())
    local rows = assert(conn:query("select s.ssl from pg_stat_activity a join pg_stat_ssl s using (pid)"
      .. " where a.application_name = $1", app_name))
    conn:close()
    assert.truthy(#rows >= 1)
    for _, r in ipairs(rows) do assert.is_true(r.ssl) end
    -- and its Redis connection is to the TLS server
    local r = assert(redis.connect(env.REDIS_TLS_URL))
    local clients = assert(r:call("CLIENT", "LIST"))
    r:close()
    local _, n = clients:gsub("\n", "")
    assert.truthy(n >= 2, clients) -- web's and this one
  end)

  it("refuses Redis's self-signed certificate only when told to verify", function()
    local port = server.free_port()
    local env = web_env(port)
    env.DATABASE_URL = os.getenv("DATABASE_URL")
    env.REDIS_URL = os.getenv("REDIS_URL")
    env.REDIS_TLS_URL = "rediss://:tls-pw@127.0.0.1:" .. tls_redis.port
    env.REDIS_TLS_VERIFY = "1"
    web = daemon.start({ command = "web", root = host.root, env = env })
    assert.is_true(server.wait_accepting(port, 15, function() return web:alive() end), web:log())
    local body, code = http.request("http://127.0.0.1:" .. port .. "/health")
    assert.equal(503, code, body)
    assert.matches("certificate verify failed", json.decode(body).checks.redis, 1, true)
  end)
end)

describe("worker and clock on Heroku's terms", function()
  local db, proc_d
  before_each(function() db = redis_db.open(27) end)
  after_each(function()
    if proc_d then proc_d:stop() end
    db:close()
  end)

  local function dyno_env(name)
    return { DYNO = name, MC_RELOAD = "0", REDIS_URL = db.url, DATABASE_URL = os.getenv("DATABASE_URL"),
      REDIS_TLS_URL = "", ENCRYPTION_KEYS = "k1:" .. string.rep("A", 43) .. "=", APP_URL = "http://127.0.0.1:1",
      HEROKU_API_TOKEN = "t", HEROKU_APP_NAME = "isv", SALESFORCE_CLIENT_ID = "x", SALESFORCE_CLIENT_SECRET = "y" }
  end

  it("the worker's identity in Redis starts with $DYNO", function()
    proc_d = daemon.start({ command = "worker", root = host.root, env = dyno_env("worker.3") })
    assert.is_true(proc_d:wait_log("msg=started", 30), proc_d:log())
    assert.matches("identity=worker%.3:%d+:", proc_d:log())
    local members = assert(db.r:call("SMEMBERS", "processes"))
    assert.equal(1, #members)
    assert.matches("^worker%.3:", members[1])
  end)

  it("the clock's identity starts with $DYNO", function()
    proc_d = daemon.start({ command = "clock", root = host.root, env = dyno_env("clock.1") })
    assert.is_true(proc_d:wait_log("msg=\"clock starting\"", 30), proc_d:log())
    assert.matches("identity=clock%.1:%d+", proc_d:log())
  end)
end)
