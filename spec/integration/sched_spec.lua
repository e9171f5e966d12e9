-- mc.sched: coroutines on one thread whose mc.http, mc.redis and mc.pg calls yield
-- while they wait, against a local HTTP server (spec/support/http_server.lua), the
-- harness's Redis (keys under a prefix of this run) and Postgres.
local sched = require "mc.sched"
local http = require "mc.http"
local redis = require "mc.redis"
local pg = require "mc.pg"
local conns = require "mc.conns"
local host = require "mc.host"
local server = require "support.server"

local PREFIX = "mc:spec:sched:" .. math.random(1, 1e9) .. ":"

-- Runs every fn in its own coroutine to the end -> {ok, result...} per fn, seconds
-- run_all(fns[, step]) -> results, seconds: the scheduler stepped with waits of
-- up to `step` seconds (1) until every coroutine has ended
local function run_all(fns, step)
  local s, out = sched.new(), {}
  local t0 = host.now()
  for i, fn in ipairs(fns) do
    s:spawn(fn, function(...) out[i] = table.pack(...) end)
  end
  while s:count() > 0 do
    s:step(step or 1)
    assert(host.now() - t0 < 60, "coroutines still running after 60 s")
  end
  return out, host.now() - t0
end

local function times(n, fn)
  local fns = {}
  for i = 1, n do fns[i] = function() return fn(i) end end
  return fns
end

describe("mc.sched", function()
  local base, stop

  setup(function() base, stop = server.http() end)
  teardown(function() stop() end)

  it("runs 100 HTTP calls that each wait 200 ms at once on one thread", function()
    local out, secs = run_all(times(100, function()
      local res, err = http.get(base .. "/delay/200")
      return res and res.body or err
    end))
    for i = 1, 100 do assert.same({ n = 2, true, "slept" }, out[i]) end
    assert.is_true(secs < 5, secs .. " s") -- blocking calls would take 20 s
  end)

  it("keeps the blocking call outside a scheduler's coroutine, and in a script's own", function()
    assert.is_false(sched.adopted())
    assert.equal("slept", http.get(base .. "/delay/10").body)
    local out = run_all({ function()
      local co = coroutine.wrap(function() return sched.adopted(), http.get(base .. "/delay/10").body end)
      return co()
    end })
    assert.same({ n = 3, true, false, "slept" }, out[1])
  end)

  it("gives transport failures as nil, err in a coroutine too", function()
    local out = run_all({ function() return http.get("http://127.0.0.1:1/", { timeout = 2 }) end })
    assert.same({ n = 3, true, nil, "connection refused" }, out[1])
  end)

  it("ends a request that fails before any socket at the first step, not after the step's wait", function()
    local out, secs = run_all({ function() return http.request({ url = "ftp://127.0.0.1/x" }) end }, 10)
    assert.same({ n = 3, true, nil, "unsupported protocol" }, out[1])
    assert.is_true(secs < 3, secs .. " s") -- reported after the step's wait, it takes 10 s
  end)

  it("lets a job's error end its coroutine alone", function()
    local out = run_all({
      function() http.get(base .. "/delay/50"); error("boom") end,
      function() return http.get(base .. "/delay/100").body end,
    })
    assert.is_false(out[1][1])
    assert.matches("boom", out[1][2])
    assert.same({ n = 2, true, "slept" }, out[2])
  end)

  it("yields in mc.redis: a BLPOP waits while another coroutine pushes", function()
    local url = assert(os.getenv("REDIS_URL"))
    local a, b = assert(redis.connect(url)), assert(redis.connect(url))
    local key = PREFIX .. "list"
    local out, secs = run_all({
      function() return a:call("BLPOP", key, 5) end,
      function()
        sched.sleep(0.1)
        local res = b:pipeline(function(p) p:call("RPUSH", key, "x"); p:call("PING") end)
        return res[1], res[2]
      end,
    })
    assert.same({ key, "x" }, out[1][2])
    assert.same({ n = 3, true, 1, "PONG" }, out[2])
    assert.is_true(secs < 2, secs .. " s")
    a:close(); b:close()
  end)

  it("times a redis command out in a coroutine as outside", function()
    local r = assert(redis.connect(os.getenv("REDIS_URL"), { timeout = 0.2 }))
    local out = run_all({ function() return r:call("BLPOP", PREFIX .. "never", 0) end })
    assert.same({ n = 3, true, nil, "timeout" }, out[1])
    assert.equal("PONG", r:call("PING")) -- reconnected
    r:close()
  end)

  it("refuses a connection another coroutine waits on", function()
    local r = assert(redis.connect(os.getenv("REDIS_URL")))
    local out = run_all({
      function() return r:call("BLPOP", PREFIX .. "busy", 0.3) end,
      function() return r:call("PING") end,
    })
    assert.is_false(out[2][1])
    assert.matches("in use by another coroutine", out[2][2])
    r:close()
  end)

  it("answers closed to a coroutine whose redis connection another closed while it waited", function()
    -- an HTTP transfer makes the scheduler wait through curl_multi_poll, which
    -- drops POLLNVAL: the closed socket must still wake its coroutine at once
    local function fetch() return http.get(base .. "/delay/10").body end
    local r = assert(redis.connect(os.getenv("REDIS_URL")))
    local out, secs = run_all({
      fetch,
      function() return r:call("BLPOP", PREFIX .. "closed", 0.3) end,
      function() return r:close() end,
    })
    assert.same({ n = 3, true, nil, "closed" }, out[2])
    assert.is_true(secs < 5, secs .. " s") -- a closed socket curl's poll does not report: 10 s
    r = assert(redis.connect(os.getenv("REDIS_URL")))
    out, secs = run_all({
      fetch,
      function() return r:pipeline(function(p) p:call("BLPOP", PREFIX .. "closed", 0.3) end) end,
      function() return r:close() end,
    })
    assert.same({ n = 3, true, nil, "closed" }, out[2])
    assert.is_true(secs < 5, secs .. " s") -- a closed socket curl's poll does not report: 10 s
  end)

  it("yields in mc.pg: two pg_sleep(0.4) on two connections take 0.4 s, not 0.8", function()
    local c1, c2 = assert(pg.connect()), assert(pg.connect())
    local out, secs = run_all({
      function() return c1:query("select pg_sleep(0.4), $1::int as n", 1)[1].n end,
      function() return c2:query("select pg_sleep(0.4), $1::int as n", 2)[1].n end,
    })
    assert.same({ n = 2, true, 1 }, out[1])
    assert.same({ n = 2, true, 2 }, out[2])
    assert.is_true(secs < 0.75, secs .. " s")
    c1:close(); c2:close()
  end)

  it("gives mc.pg's results, errors and cached statements in a coroutine as outside", function()
    local c = assert(pg.connect())
    local out = run_all({ function()
      local rows = assert(c:query("select $1::text as t, null::int as z", "a"))
      local again = assert(c:query("select $1::text as t, null::int as z", "b")) -- prepared now
      local multi = assert(c:exec("create temp table sched_t (n int); insert into sched_t values (7); " ..
        "select n from sched_t"))
      local _, err, state = c:query("select * from no_such_table")
      local _, err2 = c:exec("select 1; select 1/0; select 2")
      return rows[1].t, rows[1].z, again[1].t, multi[1].n, err, state, err2
    end })
    assert.same({ n = 8, true, "a", mc.null, "b", 7,
      'relation "no_such_table" does not exist', "42P01", "division by zero" }, out[1])
    assert.equal("idle", c:status())
    c:close()
  end)

  it("gives each coroutine its own pooled connection, and waits when the pool is out", function()
    conns.limit("pg", 1)
    local seen = {}
    local out, secs = run_all(times(2, function(i)
      local c = assert(conns.pg())
      seen[i] = c
      c:query("select pg_sleep(0.2)")
      conns.release(coroutine.running())
      return true
    end))
    conns.limit("pg", nil)
    assert.same({ n = 2, true, true }, out[1])
    assert.same({ n = 2, true, true }, out[2])
    assert.equal(seen[1], seen[2])                     -- one connection, one after the other
    assert.is_true(secs >= 0.4, secs .. " s")
    assert.are_not.equal(seen[1], assert(conns.pg())) -- not the state's own
  end)

  it("gives each coroutine its own connection to another database (pg_at), and takes it back", function()
    -- another URL for the same server: what matters is that it is not DATABASE_URL's
    local url = os.getenv("DATABASE_URL") .. (os.getenv("DATABASE_URL"):find("?", 1, true) and "&" or "?")
      .. "application_name=sched_pg_at"
    local seen = {}
    local out = run_all(times(2, function(i)
      local c = assert(conns.pg_at(url))
      seen[i] = c
      local n = c:query("select pg_sleep(0.3), $1::int as n", i)[1].n
      conns.release(coroutine.running())
      return n
    end))
    assert.same({ n = 2, true, 1 }, out[1])
    assert.same({ n = 2, true, 2 }, out[2])
    assert.are_not.equal(seen[1], seen[2])              -- neither waited on the other's
    local again = run_all({ function() return conns.pg_at(url) end })
    assert.is_true(again[1][2] == seen[1] or again[1][2] == seen[2]) -- given back, then reused
  end)

  it("caps another database's pooled connections as pg()'s are (conns.limit \"pg\")", function()
    local url = os.getenv("DATABASE_URL") .. (os.getenv("DATABASE_URL"):find("?", 1, true) and "&" or "?")
      .. "application_name=sched_pg_at_cap"
    conns.limit("pg", 1)
    local seen = {}
    local out, secs = run_all(times(2, function(i)
      local c = assert(conns.pg_at(url))
      seen[i] = c
      c:query("select pg_sleep(0.2)")
      conns.release(coroutine.running())
      return true
    end))
    conns.limit("pg", nil)
    assert.same({ n = 2, true, true }, out[1])
    assert.same({ n = 2, true, true }, out[2])
    assert.equal(seen[1], seen[2]) -- one connection, one after the other
    assert.is_true(secs >= 0.4, secs .. " s")
  end)

  it("never makes a coroutine holding one kind wait for another (crossed waits would stall both)", function()
    conns.limit("pg", 1, 1)
    conns.limit("redis", 1, 1)
    local out = run_all({
      function() -- Redis, then Postgres
        assert(conns.redis()); sched.sleep(0.1)
        local c = assert(conns.pg())
        conns.release(coroutine.running())
        return c ~= nil
      end,
      function() -- Postgres, then Redis
        assert(conns.pg()); sched.sleep(0.1)
        local r = assert(conns.redis())
        conns.release(coroutine.running())
        return r ~= nil
      end,
    })
    conns.limit("pg", nil)
    conns.limit("redis", nil)
    assert.same({ n = 2, true, true }, out[1])
    assert.same({ n = 2, true, true }, out[2])
  end)

  it("closes a pooled connection given back inside a transaction", function()
    local c
    local out = run_all({ function()
      c = assert(conns.pg())
      assert(c:exec("begin"))
      conns.release(coroutine.running())
    end })
    assert.is_true(out[1][1], tostring(out[1][2]))
    assert.equal("closed", select(2, c:status()))
  end)
  it("parks a coroutine at the end of its task and reuses it for the next", function()
    local s, done = sched.new(), {}
    local co
    local function serve(n)
      while true do
        sched.sleep(0.01) -- a wait: the task spans steps
        done[#done + 1] = { n, sched.adopted() }
        co = coroutine.running()
        n = coroutine.yield(sched.PARK)
      end
    end
    s:spawn(serve, nil, 1)
    while s:count() > 0 do s:step(1) end
    assert.is_false(sched.adopted(co)) -- parked: no task, not the scheduler's
    assert.equal("suspended", coroutine.status(co))
    local first = co
    s:reuse(co, function(ok) done.reused_ok = ok end, 2)
    assert.equal(1, s:count())
    while s:count() > 0 do s:step(1) end
    assert.equal(first, co)
    assert.same({ { 1, true }, { 2, true }, reused_ok = true }, done)
  end)

  it("ends a step's wait early when wake_fd is readable", function()
    local socket = require "socket"
    local srv = assert(socket.bind("127.0.0.1", 0))
    local ip, port = srv:getsockname()
    local c = assert(socket.connect(ip, port))
    local peer = assert(srv:accept())
    local s = sched.new()
    s:spawn(function() sched.sleep(5) end)
    local t0 = host.now()
    s:step(0.3, peer:getfd()) -- nothing to read: the whole 0.3 s
    local idle = host.now() - t0
    assert(c:send("x"))
    t0 = host.now()
    s:step(3, peer:getfd())
    local woken = host.now() - t0
    c:close(); peer:close(); srv:close()
    assert.is_true(idle >= 0.25, idle .. " s")
    assert.is_true(woken < 1, woken .. " s")
    assert.equal(1, s:count()) -- the sleeper still sleeps
  end)
end)
