-- tools/services stop and start, on a private pair (MC_VAR in a scratch folder):
-- each server comes back on its URL, so processes holding it reconnect by
-- themselves.
local host = require "mc.host"
local proc = require "support.process"
local socket = require "socket"
local redis = require "mc.redis"
local pg = require "mc.pg"
local jobs = require "mc.jobs"
local json = require "mc.json"
local http = require "mc.http"
local daemon = require "support.daemon"
local server = require "support.server"

describe("tools/services stop, then start", function()
  local dir, cleanup, urls

  local function svc(...)
    local r = proc.run({ host.root .. "/tools/services", ... },
      { env = { MC_VAR = dir, DATABASE_URL = "", REDIS_URL = "" } })
    assert.equal(0, r.code, r.stderr)
    return r.stdout, r.stderr
  end

  local function start(which)
    local out, err = svc("start", which)
    urls = { postgres = out:match("DATABASE_URL='([^']+)'") or urls.postgres,
      redis = out:match("REDIS_URL='([^']+)'") or urls.redis }
    return err
  end

  setup(function()
    dir, cleanup = proc.tmpdir()
    urls = {}
    start()
    assert(urls.postgres and urls.redis, "the private servers' URLs")
  end)

  teardown(function()
    local f = io.open(dir .. "/services/pg.dir")
    local pgdir = f and f:read("l")
    if f then f:close() end
    svc("stop")
    if pgdir and pgdir:find("^/tmp/") then os.execute("rm -rf " .. proc.quote(pgdir)) end
    cleanup()
  end)

  it("brings Redis back on the same port", function()
    local before = urls.redis
    svc("stop", "redis")
    assert.is_nil(redis.connect(before))
    start("redis")
    assert.equal(before, urls.redis)
    local r = assert(redis.connect(urls.redis))
    assert.equal("PONG", r:call("PING"))
    r:close()
  end)

  it("keeps Redis's data, queued jobs included, across stop and start (SHUTDOWN writes the AOF)", function()
    local r = assert(redis.connect(urls.redis))
    jobs.use(r)
    local jid = assert(jobs.enqueue("onboarding.advance", { "00D000000000001AAA", 2 }, { queue = "critical" }))
    local later = assert(jobs.enqueue("onboarding.advance", { "00D000000000002AAA", 1 }, { ["in"] = 3600 }))
    jobs.use(nil)
    assert.equal("OK", r:call("SET", "kept", "yes"))
    r:close()
    svc("stop", "redis") -- at once: inside the second that everysec has not yet written
    start("redis")
    r = assert(redis.connect(urls.redis))
    assert.equal("yes", r:call("GET", "kept"))
    local queued = r:call("LRANGE", "queue:critical", 0, -1)
    assert.equal(1, #queued)
    assert.equal(jid, json.decode(queued[1]).jid)
    assert.equal(1, r:call("ZCARD", "schedule"))
    assert.equal(later, json.decode(r:call("ZRANGE", "schedule", 0, 0)[1]).jid)
    r:close()
  end)

  it("brings Postgres back on the same port, with its data", function()
    local c = assert(pg.connect(urls.postgres))
    assert(c:exec("create table if not exists kept (v int); insert into kept values (7)"))
    c:close()
    local before = urls.postgres
    svc("stop", "postgres")
    assert.is_nil(pg.connect(before))
    start("postgres")
    assert.equal(before, urls.postgres)
    c = assert(pg.connect(urls.postgres))
    assert.equal(7, assert(c:query("select v from kept"))[1].v)
    c:close()
  end)

  it("moves to another port, and says so, when its own is taken", function()
    local before = urls.redis
    svc("stop", "redis")
    local squatter = assert(socket.bind("127.0.0.1", tonumber(before:match(":(%d+)/"))))
    local err = start("redis")
    squatter:close()
    assert.not_equal(before, urls.redis)
    assert.matches("is taken; moving to another", err, 1, true)
    local r = assert(redis.connect(urls.redis))
    assert.equal("PONG", r:call("PING"))
    r:close()
  end)

  it("lets a running `multiconnect web` of the project recover by itself: /health 503 while down, 200 after", function()
    local port = server.free_port()
    local web = daemon.start({ command = "web", root = host.root, env = {
      PORT = tostring(port), WEB_BIND = "127.0.0.1", DATABASE_URL = urls.postgres, REDIS_URL = urls.redis,
      -- what scripts/config.lua requires of `web`, besides the services' URLs
      APP_URL = "http://127.0.0.1:1", ENCRYPTION_KEYS = "k1:" .. string.rep("A", 43) .. "=",
      SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret" } })
    finally(function() web:stop() end)
    assert.is_true(server.wait_accepting(port, 10, function() return web:alive() end), web:log())
    local function health()
      local res = assert(http.get("http://127.0.0.1:" .. port .. "/health", { timeout = 10 }))
      return res.status, assert(res:json()).checks
    end
    local function comes_back(what)
      proc.wait_for(function() return health() == 200 end, 15, "/health to answer 200 after " .. what)
    end
    assert.equal(200, (health()))

    svc("stop", "redis")
    local status, checks = health()
    assert.equal(503, status)
    assert.equal("ok", checks.postgres)
    assert.not_equal("ok", checks.redis)
    start("redis")
    comes_back("redis came back")

    svc("stop", "postgres")
    status, checks = health()
    assert.equal(503, status)
    assert.not_equal("ok", checks.postgres)
    assert.equal("ok", checks.redis)
    start("postgres")
    comes_back("postgres came back")
    assert.is_true(web:alive()) -- the same process throughout
  end)
end)
