-- mc.redis against the harness's Redis (REDIS_URL) and against private
-- redis-servers this spec starts on free ports: one with a password, one that
-- speaks only TLS with a self-signed certificate made here.
local redis = require "mc.redis"
local proc = require "support.process"
local redis_server = require "support.redis_server"
local support_server = require "support.server"

local null = mc.null

local PREFIX = "mc:spec:redis:" .. math.random(1, 1e9) .. ":"

-- Runs src in a fresh multiconnect process with env (see support.process).
-- (An empty value stands for unset: mc.redis reads it so, and env -u cannot
-- follow NAME=value in the env(1) command support.process builds.)
local function run_script(src, env)
  local dir, cleanup = proc.tmpdir()
  local res = proc.mc({ "run", proc.write(dir .. "/script.lua", src) }, { env = env })
  cleanup()
  return res
end

local start_server = redis_server.start

describe("mc.redis", function()
  local url = assert(os.getenv("REDIS_URL"), "REDIS_URL is set by make test")
  local r

  before_each(function() r = assert(redis.connect(url)) end)
  after_each(function()
    local keys = assert(r:call("KEYS", PREFIX .. "*"))
    if #keys > 0 then assert(r:call("DEL", table.unpack(keys))) end
    r:close()
  end)

  describe("call", function()
    it("maps every reply type to a Lua value", function()
      local k = PREFIX .. "types"
      assert.equal("PONG", r:call("PING"))                 -- status
      assert.equal("OK", r:call("SET", k, "v"))            -- status
      assert.equal("v", r:call("GET", k))                  -- bulk
      assert.equal(null, r:call("GET", PREFIX .. "none"))  -- nil
      assert.equal(1, r:call("DEL", k))                    -- integer
      assert.equal(math.type(r:call("INCR", k)), "integer")
      assert.same({}, r:call("LRANGE", PREFIX .. "none", 0, -1)) -- empty array
      assert.same({ 1, "two", { 3, { "four" } }, null },
        r:call("EVAL", "return {1, 'two', {3, {'four'}}, false}", 0))
    end)

    it("returns nil and Redis's error text for -ERR", function()
      local k = PREFIX .. "list"
      assert.equal(1, r:call("RPUSH", k, "x"))
      local v, err = r:call("INCR", k)
      assert.is_nil(v)
      assert.matches("^WRONGTYPE ", err)
      v, err = r:call("NOSUCHCOMMAND")
      assert.is_nil(v)
      assert.matches("^ERR unknown command", err)
      assert.equal("PONG", r:call("PING")) -- the connection is still good
    end)

    it("gives an error nested in an array as {err = ...}", function()
      local res = r:call("EVAL", "return {1, redis.error_reply('MY nested')}", 0)
      assert.same({ 1, { err = "MY nested" } }, res)
    end)

    it("is binary-safe", function()
      local k, v = PREFIX .. "bin", "a\0b\r\nc\r\n$3\r\n*1\r\n\255"
      assert.equal("OK", r:call("SET", k, v))
      assert.equal(v, r:call("GET", k))
      assert.equal(#v, r:call("STRLEN", k))
    end)

    it("sends and receives a 1 MiB value", function()
      local k = PREFIX .. "big"
      local v = string.rep("0123456789abcdef", 65536)
      assert.equal("OK", r:call("SET", k, v))
      assert.equal(v, r:call("GET", k))
    end)

    it("writes numbers as Redis reads them", function()
      local k = PREFIX .. "n"
      local function roundtrip(n)
        assert(r:call("SET", k, n))
        return r:call("GET", k)
      end
      assert.equal("42", roundtrip(42))
      assert.equal("3", roundtrip(3.0))
      assert.equal("-7", roundtrip(-7.0))
      assert.equal("1.5", roundtrip(1.5))
      assert.equal("0.1", roundtrip(0.1))
      assert.equal("4611686018427387904", roundtrip(1 << 62))
      assert.equal(0.1, tonumber(roundtrip(0.1)))
      assert.equal(5, r:call("INCRBY", k .. "i", 5.0))
    end)

    it("raises on misuse", function()
      assert.has_error(function() r:call() end)
      assert.has_error(function() r:call("SET", PREFIX .. "x", {}) end,
        "bad argument #3 to 'call' (string or number expected, got table)")
      assert.has_error(function() r:call("SET", PREFIX .. "x", true) end)
      assert.has_error(function() r:call("SET", PREFIX .. "x", 0 / 0) end)
      assert.has_error(function() redis.connect(42) end)
      assert.has_error(function() redis.connect(url, { timeout = -1 }) end)
      assert.equal("PONG", r:call("PING"))
    end)
  end)

  describe("pipeline", function()
    it("runs many commands and returns their results in order", function()
      local k = PREFIX .. "pipe"
      local res = assert(r:pipeline(function(p)
        for i = 1, 1000 do p:call("RPUSH", k, i) end
        p:call("LRANGE", k, 0, 2)
        p:call("GET", PREFIX .. "none")
      end))
      assert.equal(1002, #res)
      for i = 1, 1000 do assert.equal(i, res[i]) end
      assert.same({ "1", "2", "3" }, res[1001])
      assert.equal(null, res[1002])
    end)

    it("marks the commands Redis refused and runs the rest", function()
      local k = PREFIX .. "mixed"
      local res = assert(r:pipeline(function(p)
        p:call("SET", k, "text")
        p:call("INCR", k)
        p:call("BOGUS")
        p:call("APPEND", k, "!")
      end))
      assert.equal("OK", res[1])
      assert.matches("^ERR value is not an integer", res[2].err)
      assert.matches("^ERR unknown command", res[3].err)
      assert.equal(5, res[4])
    end)

    it("carries big and binary values both ways", function()
      local k, v = PREFIX .. "pbig", string.rep("x\0\r\n", 262144)
      local res = assert(r:pipeline(function(p)
        p:call("SET", k, v)
        p:call("GET", k)
      end))
      assert.same({ "OK", v }, res)
    end)

    it("returns an empty array for no commands and raises on misuse", function()
      assert.same({}, r:pipeline(function() end))
      assert.has_error(function() r:pipeline("PING") end)
      assert.has_error(function() r:pipeline(function(p) p:call("SET", "k", {}) end) end,
        "bad argument #3 to 'call' (string or number expected, got table)")
      local kept
      assert(r:pipeline(function(p) kept = p; p:call("PING") end))
      assert.has_error(function() kept:call("PING") end, "pipeline already sent")
      assert.has_error(function() r:eval("return 1", "k") end)
      assert.has_error(function() r:pipeline(function(p) p:call() end) end)
      assert.has_error(function() r:pipeline(function() error("boom") end) end, "boom")
      assert.equal("PONG", r:call("PING"))
    end)

    it("queues nothing of a command whose arguments raise, even when fn catches it", function()
      local k = PREFIX .. "pcaught"
      local res = assert(r:pipeline(function(p)
        p:call("SET", k, "a")
        assert(not pcall(p.call, p, "SET", k, {}))
        assert(not pcall(p.call, p, "SET", k, 0 / 0))
        p:call("GET", k)
      end))
      assert.same({ "OK", "a" }, res)
      assert.equal("PONG", r:call("PING"))
    end)
  end)

  describe("eval", function()
    local SCRIPT = "return {KEYS[1], ARGV[1], redis.call('INCRBY', KEYS[1], ARGV[2])}"

    it("runs a script with keys and args, loading it again after SCRIPT FLUSH", function()
      local k = PREFIX .. "ev"
      assert.same({ k, "a", 2 }, r:eval(SCRIPT, { k }, { "a", 2 }))
      local sha = require("mc.redis_native").sha1_hex(SCRIPT)
      assert.same({ 1 }, r:call("SCRIPT", "EXISTS", sha))
      assert.same({ k, "b", 5 }, r:eval(SCRIPT, { k }, { "b", 3 }))
      assert.equal("OK", r:call("SCRIPT", "FLUSH"))
      assert.same({ k, "c", 6 }, r:eval(SCRIPT, { k }, { "c", 1 }))
      assert.equal(null, r:eval("return nil"))
    end)

    it("returns nil, err for a failing script", function()
      local v, err = r:eval("return redis.error_reply('MY oops')")
      assert.is_nil(v)
      assert.equal("MY oops", err)
      v, err = r:eval("this is not lua")
      assert.is_nil(v)
      assert.matches("^ERR", err)
    end)

    it("names scripts by their SHA1", function()
      assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d",
        require("mc.redis_native").sha1_hex("abc"))
    end)
  end)

  describe("connection", function()
    it("reconnects on the call after the server dropped it", function()
      local id = assert(r:call("CLIENT", "ID"))
      local other = assert(redis.connect(url))
      assert.equal(1, other:call("CLIENT", "KILL", "ID", id))
      other:close()
      local v, err = r:call("PING")
      assert.is_nil(v)
      assert.equal("connection lost", err)
      assert.equal("PONG", r:call("PING"))
      assert.not_equal(id, r:call("CLIENT", "ID"))
    end)

    it("times a command out, then works again", function()
      local c = assert(redis.connect(url, { timeout = 0.2 }))
      local v, err = c:call("BLPOP", PREFIX .. "empty", 5)
      assert.is_nil(v)
      assert.equal("timeout", err)
      assert.equal("PONG", c:call("PING"))
      assert(c:set_timeout(10))
      assert.same(null, c:call("BLPOP", PREFIX .. "empty", 0.01))
      c:close()
    end)

    it("returns nil, err when it cannot connect", function()
      local v, err = redis.connect("redis://127.0.0.1:" .. support_server.free_port())
      assert.is_nil(v)
      assert.equal("connection refused", err)
      v, err = redis.connect("redis://no-such-host.invalid:6390")
      assert.is_nil(v)
      assert.matches("^resolve no%-such%-host%.invalid: ", err)
      v, err = redis.connect("http://127.0.0.1:6390")
      assert.is_nil(v)
      assert.matches("scheme", err)
      v, err = redis.connect("redis://127.0.0.1:6390/x")
      assert.is_nil(v)
      assert.matches("database index", err)
      v, err = redis.connect("redis://127.0.0.1:6390/99999999999")
      assert.is_nil(v)
      assert.matches("database index", err)
      v, err = redis.connect("redis://127.0.0.1:0")
      assert.is_nil(v)
      assert.matches("port", err)
    end)

    it("answers nil, 'closed' once closed, and closes with <close>", function()
      r:close()
      assert.same({ nil, "closed" }, { r:call("PING") })
      assert.same({ nil, "closed" }, { r:pipeline(function(p) p:call("PING") end) })
      assert.matches("closed", tostring(r))
      r:close() -- idempotent
      local kept
      do
        local c <close> = assert(redis.connect(url))
        kept = c
        assert.matches("^mc%.redis connection %(127%.0%.0%.1:%d+/%d+%)", tostring(c))
      end
      assert.same({ nil, "closed" }, { kept:call("PING") })
      r = assert(redis.connect(url)) -- for after_each
    end)

    it("reads REDIS_URL when no URL is given, and says when there is none", function()
      local res = run_script("local r = assert(require('mc.redis').connect()); print(r:call('PING'))",
        { REDIS_TLS_URL = "", REDIS_URL = url })
      assert.equal(0, res.code, res.stderr)
      assert.equal("PONG\n", res.stdout)
      res = run_script("print(require('mc.redis').connect())",
        { REDIS_TLS_URL = "", REDIS_URL = "" })
      assert.equal("nil\tno Redis URL: neither REDIS_TLS_URL nor REDIS_URL is set\n", res.stdout)
    end)
  end)

  describe("with a password, an ACL user and a database index", function()
    local dir, cleanup, server
    setup(function()
      dir, cleanup = proc.tmpdir()
      server = start_server(dir, { args = { "--requirepass", "s3cret" } })
    end)
    teardown(function()
      server.stop()
      cleanup()
    end)

    local function base() return "redis://:s3cret@127.0.0.1:" .. server.port end

    it("authenticates and selects the database from the URL", function()
      local c = assert(redis.connect(base() .. "/3"))
      assert.equal("OK", c:call("SET", "k", "in3"))
      local z = assert(redis.connect(base()))
      assert.equal(null, z:call("GET", "k"))
      assert.equal("OK", z:call("SELECT", 3))
      assert.equal("in3", z:call("GET", "k"))
      c:close()
      z:close()
    end)

    it("refuses a wrong password, and a missing one", function()
      local v, err = redis.connect("redis://:wrong@127.0.0.1:" .. server.port)
      assert.is_nil(v)
      assert.matches("^AUTH: WRONGPASS", err)
      assert.not_matches("wrong", err:sub(6))
      local c = assert(redis.connect("redis://127.0.0.1:" .. server.port))
      v, err = c:call("PING")
      assert.is_nil(v)
      assert.matches("^NOAUTH", err)
      c:close()
    end)

    it("logs in as an ACL user", function()
      local admin = assert(redis.connect(base()))
      assert.equal("OK", admin:call("ACL", "SETUSER", "mc_user", "on", ">pw%40", "~*", "+@all"))
      admin:close()
      local c = assert(redis.connect("redis://mc_user:pw%2540@127.0.0.1:" .. server.port .. "/2"))
      assert.equal("mc_user", c:call("ACL", "WHOAMI"))
      c:close()
    end)

    it("authenticates and selects again after a reconnect", function()
      local c = assert(redis.connect(base() .. "/4"))
      assert.equal("OK", c:call("SET", "where", "4"))
      local admin = assert(redis.connect(base()))
      assert.equal(1, admin:call("CLIENT", "KILL", "ID", c:call("CLIENT", "ID")))
      admin:close()
      assert.same({ nil, "connection lost" }, { c:call("GET", "where") })
      assert.equal("4", c:call("GET", "where"))
      c:close()
    end)

    it("times out against a stopped server, and recovers when it resumes", function()
      local c = assert(redis.connect(base(), { timeout = 0.2, connect_timeout = 0.2 }))
      server.signal("STOP")
      local ok, v, err = pcall(c.call, c, "PING")
      local ok2, v2, err2 = pcall(redis.connect, base(), { connect_timeout = 0.2 })
      server.signal("CONT")
      assert(ok and ok2)
      assert.is_nil(v)
      assert.equal("timeout", err)
      assert.is_nil(v2)
      assert.equal("timeout", err2)
      assert.equal("PONG", c:call("PING"))
      c:close()
    end)
  end)

  describe("over TLS", function()
    local dir, cleanup, server, tls_url
    setup(function()
      dir, cleanup = proc.tmpdir()
      local tls = redis_server.self_signed(dir)
      server = start_server(dir, { tls = tls, args = { "--requirepass", "tls-pw" } })
      tls_url = "rediss://:tls-pw@127.0.0.1:" .. server.port .. "/1"
    end)
    teardown(function()
      server.stop()
      cleanup()
    end)

    it("talks to a self-signed server without verification (as Heroku Redis needs)", function()
      local c = assert(redis.connect(tls_url))
      assert.matches("%(tls 127%.0%.0%.1:", tostring(c))
      local v = string.rep("tls\0", 300000)
      assert.equal("OK", c:call("SET", "k", v))
      assert.equal(v, c:call("GET", "k"))
      assert.same({ "OK", 7 }, c:pipeline(function(p)
        p:call("SET", "n", 6)
        p:call("INCR", "n")
      end))
      assert.equal(7, c:eval("return redis.call('GET', KEYS[1]) + 0", { "n" }))
      c:close()
    end)

    it("reconnects over TLS after the server dropped the connection", function()
      local c = assert(redis.connect(tls_url))
      local admin = assert(redis.connect(tls_url))
      assert.equal(1, admin:call("CLIENT", "KILL", "ID", c:call("CLIENT", "ID")))
      admin:close()
      local v, err = c:call("PING")
      assert.is_nil(v)
      assert.equal("connection lost", err)
      assert.equal("PONG", c:call("PING"))
      c:close()
    end)

    it("refuses the self-signed certificate when REDIS_TLS_VERIFY=1", function()
      local res = run_script("print(require('mc.redis').connect())",
        { REDIS_TLS_VERIFY = "1", REDIS_TLS_URL = tls_url, REDIS_TLS_CA_FILE = "" })
      assert.equal(0, res.code, res.stderr)
      assert.matches("^nil\ttls: certificate verify failed: self.signed certificate", res.stdout)
    end)

    it("verifies against a CA file, host name included", function()
      local cert = dir .. "/cert.pem"
      local by_name = tls_url:gsub("127%.0%.0%.1", "localhost")
      local c = assert(redis.connect(by_name, { verify = true, ca_file = cert }))
      assert.equal("PONG", c:call("PING"))
      c:close()
      local v, err = redis.connect(tls_url, { verify = true, ca_file = cert })
      assert.is_nil(v)
      assert.matches("^tls: certificate verify failed: ", err)
    end)

    it("fails cleanly speaking TLS to a plain server and plain to a TLS one", function()
      local v, err = redis.connect(url:gsub("^redis:", "rediss:"), { connect_timeout = 1 })
      assert.is_nil(v)
      assert.is_string(err)
      -- no AUTH to send: the TCP connect succeeds, the first command fails
      local c = assert(redis.connect("redis://127.0.0.1:" .. server.port, { timeout = 1 }))
      v, err = c:call("PING")
      assert.is_nil(v)
      assert.is_string(err)
      c:close()
    end)
  end)


  proc.leak_it("has no definite leaks under valgrind", function()
    proc.assert_script_no_leaks([[
      local redis = require "mc.redis"
      local r = assert(redis.connect())
      local k = ]] .. string.format("%q", PREFIX .. "vg") .. [[
      assert(r:call("SET", k, string.rep("v", 100000)))
      assert(not r:call("INCR", k))
      assert(r:pipeline(function(p) p:call("GET", k); p:call("BOGUS") end))
      assert(r:eval("return {1, {2, 'x'}}"))
      assert(pcall(r.call, r, "SET", k, {}) == false)
      assert(r:call("DEL", k))
      local lost = assert(redis.connect())
      assert(r:call("CLIENT", "KILL", "ID", lost:call("CLIENT", "ID")))
      assert(not lost:call("PING"))
      assert(not redis.connect("redis://127.0.0.1:1"))
      r:close()
      return 0
    ]], nil, { env = { REDIS_URL = url } })
  end)
end)
