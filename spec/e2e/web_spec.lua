-- The real `multiconnect web`, driven over HTTP.
local server = require "support.server"
local json = require "mc.json"
local proc = require "support.process"

local APP = [[
local web = require "mc.web"
local app = web.router()
app:get("/hello", function(req) return 200, { hello = "world" } end)
app:get("/text", function(req) return 200, "plain text", { ["X-Extra"] = 42 } end)
app:get("/orgs/:org_id/events/:n", function(req)
  return 200, { org_id = req.params.org_id, n = req.params.n }
end)
app:get("/files/*", function(req) return 200, { rest = req.params["*"] } end)
app:get("/query", function(req) return 200, { query = req.query } end)
app:get("/headers", function(req)
  return 200, { agent = req.headers["user-agent"], custom = req.headers["x-custom"], ip = req.ip, id = req.id }
end)
app:post("/echo", function(req)
  local doc, err = req.json()
  if not doc then return 400, { error = "malformed JSON: " .. err } end
  return 201, { got = doc, method = req.method }
end)
app:post("/form", function(req) return 200, { form = req.form() } end)
app:put("/echo", function(req) return 204 end)
app:get("/boom", function(req) error("secret detail in the traceback") end)
app:get("/badstatus", function(req) return "200" end)
app:get("/version", function(req) return 200, { v = require("version_value") } end)
return app
]]

describe("multiconnect web", function()
  local srv
  setup(function()
    srv = server.start({
      files = { ["scripts/app.lua"] = APP, ["scripts/version_value.lua"] = "return 1" },
      env = { WEB_MAX_BODY = "1024", WEB_THREADS = "2", WEB_IDLE_TIMEOUT = "2" },
    })
  end)
  teardown(function() srv:stop() end)

  describe("routing", function()
    it("answers a table body as JSON", function()
      local r = srv:request("GET", "/hello")
      assert.equal(200, r.status)
      assert.equal("application/json", r.headers["content-type"])
      assert.same({ hello = "world" }, json.decode(r.body))
    end)

    it("sends a string body as is, with the handler's headers", function()
      local r = srv:request("GET", "/text")
      assert.equal("plain text", r.body)
      assert.equal("42", r.headers["x-extra"])
      assert.matches("^text/plain", r.headers["content-type"])
    end)

    it("binds :params and a trailing *", function()
      assert.same({ org_id = "00D5e000000abc", n = "7" },
        json.decode(srv:request("GET", "/orgs/00D5e000000abc/events/7").body))
      assert.same({ rest = "a/b/c.txt" }, json.decode(srv:request("GET", "/files/a/b/c.txt").body))
      assert.equal(404, srv:request("GET", "/orgs/x/events").status)
    end)

    it("decodes the query, repeated keys into arrays", function()
      local r = srv:request("GET", "/query?a=1&b=two%20words&c=x&c=y&c=z&e=%C3%A9&flag")
      assert.same({ a = "1", b = "two words", c = { "x", "y", "z" }, e = "é", flag = "" },
        json.decode(r.body).query)
    end)

    it("answers 404 and 405 with Allow, as JSON with the request id", function()
      local r = srv:request("GET", "/nowhere")
      assert.equal(404, r.status)
      assert.equal(r.headers["x-request-id"], json.decode(r.body).request_id)
      r = srv:request("DELETE", "/echo")
      assert.equal(405, r.status)
      assert.equal("POST, PUT", r.headers["allow"])
      assert.equal("GET, HEAD", srv:request("POST", "/hello").headers["allow"])
    end)

    it("serves HEAD from GET routes, without a body", function()
      local c = srv:connect()
      local r = srv:request("HEAD", "/hello", { conn = c })
      assert.equal(200, r.status)
      assert.equal(tostring(#'{"hello":"world"}'), r.headers["content-length"])
      -- the connection carries on cleanly: no stray body bytes
      assert.equal(200, srv:request("GET", "/hello", { conn = c }).status)
      c:close()
    end)
  end)

  describe("requests", function()
    it("takes JSON in and gives JSON out", function()
      local r = srv:request("POST", "/echo", { body = '{"org_id":"00D","n":[1,2]}' })
      assert.equal(201, r.status)
      assert.same({ got = { org_id = "00D", n = { 1, 2 } }, method = "POST" }, json.decode(r.body))
    end)

    it("lets the handler answer 400 on malformed JSON", function()
      local r = srv:request("POST", "/echo", { body = '{"org_id":' })
      assert.equal(400, r.status)
      assert.matches("malformed JSON", json.decode(r.body).error)
    end)

    it("decodes urlencoded forms", function()
      local r = srv:request("POST", "/form", { body = "a=1&b=x+y%21&a=2", headers = {
        ["Content-Type"] = "application/x-www-form-urlencoded" } })
      assert.same({ a = { "1", "2" }, b = "x y!" }, json.decode(r.body).form)
    end)

    it("lower-cases header names and knows the peer", function()
      local r = srv:request("GET", "/headers", { headers = { ["User-Agent"] = "spec/1", ["X-CUSTOM"] = "v" } })
      local doc = json.decode(r.body)
      assert.equal("spec/1", doc.agent)
      assert.equal("v", doc.custom)
      assert.equal("127.0.0.1", doc.ip)
    end)

    it("honours a sane X-Request-Id and generates one otherwise", function()
      local given = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
      local r = srv:request("GET", "/headers", { headers = { ["X-Request-Id"] = given } })
      assert.equal(given, r.headers["x-request-id"])
      assert.equal(given, json.decode(r.body).id)
      r = srv:request("GET", "/headers", { headers = { ["X-Request-Id"] = "bad id with spaces" } })
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", r.headers["x-request-id"])
      local other = srv:request("GET", "/headers").headers["x-request-id"]
      assert.are_not.equal(r.headers["x-request-id"], other)
    end)

    it("answers 204 with no body", function()
      local r = srv:request("PUT", "/echo", { body = "{}" })
      assert.equal(204, r.status)
      assert.equal("", r.body)
    end)
  end)

  describe("failures", function()
    it("turns a raising handler into a 500 with the request id, traceback only in the log", function()
      local r = srv:request("GET", "/boom")
      assert.equal(500, r.status)
      local doc = json.decode(r.body)
      assert.equal("internal server error", doc.error)
      assert.equal(r.headers["x-request-id"], doc.request_id)
      assert.is_nil(r.body:find("secret detail", 1, true))
      assert.truthy(srv:wait_log("secret detail in the traceback", 5), srv:log())
      local log = srv:log()
      assert.matches("request_id=" .. doc.request_id, log, 1, true)
    end)

    it("turns a bad status into a 500", function()
      assert.equal(500, srv:request("GET", "/badstatus").status)
    end)

    it("refuses a body over the limit with 413, and keeps serving", function()
      local r = srv:request("POST", "/echo", { body = string.rep("x", 2000) })
      assert.equal(413, r.status)
      assert.equal("request body too large", json.decode(r.body).error)
      assert.equal(200, srv:request("GET", "/hello").status)
    end)

    it("refuses an oversized chunked body with 413", function()
      local c = srv:connect()
      local chunk = string.rep("y", 600)
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. string.format("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", #chunk, chunk, #chunk, chunk))
      local r = server.read_response(c)
      c:close()
      assert.equal(413, r.status)
    end)

    it("survives garbage, half requests and clients that vanish mid-body", function()
      local c = srv:connect()
      c:send("\0\1\2 garbage that is not HTTP\r\n\r\n")
      local line = c:receive("*l")
      c:close()
      assert.truthy(line == nil or line:match("^HTTP/1%.1 4%d%d"), line)
      c = srv:connect()
      c:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"half\":")
      c:close()
      c = srv:connect()
      c:send("GET /hel")
      c:close()
      assert.equal(200, srv:request("GET", "/hello").status)
    end)

    it("refuses oversized headers", function()
      -- 431, or (when the server's close overtakes the reply) a reset: never served
      local ok, r = pcall(srv.request, srv, "GET", "/hello", { headers = { ["X-Big"] = string.rep("h", 40000) } })
      if ok then
        assert.truthy(r.status == 431 or r.status == 413 or r.status == 400, r.status)
      else
        assert.matches("closed", r)
      end
      assert.equal(200, srv:request("GET", "/hello").status)
    end)

    it("closes idle keep-alive connections after WEB_IDLE_TIMEOUT", function()
      local c = srv:connect()
      assert.equal(200, srv:request("GET", "/hello", { conn = c }).status)
      c:settimeout(6)
      local data, err = c:receive(1)
      c:close()
      assert.is_nil(data)
      assert.equal("closed", err)
    end)
  end)

  it("writes one access-log line per request", function()
    local r = srv:request("GET", "/hello?x=1")
    local id = r.headers["x-request-id"]
    assert.truthy(srv:wait_log("request_id=" .. id, 5), srv:log())
    local line = srv:log():match("[^\n]*request_id=" .. id:gsub("%-", "%%-") .. "[^\n]*")
    assert.truthy(line)
    assert.matches("^at=info method=GET path=\"/hello\" status=200 bytes=17 duration_ms=[%d.]+", line)
  end)

  it("escapes a method with control characters or quotes in the access log", function()
    local c = srv:connect()
    c:send('G\27[31mE"T=x /hello HTTP/1.1\r\nHost: x\r\nX-Request-Id: odd-method-1\r\n\r\n')
    local r = server.read_response(c)
    c:close()
    assert.equal(405, r.status)
    assert.truthy(srv:wait_log("request_id=odd-method-1", 5), srv:log())
    local line = srv:log():match("[^\n]*request_id=odd%-method%-1[^\n]*")
    assert.truthy(line)
    assert.is_nil(line:find("\27", 1, true))
    assert.matches('^at=info method="G\\x1b%[31mE\\"T=x" path="/hello" status=405 ', line)
  end)
end)

describe("GET /health (the project's own app)", function()
  local function start(env)
    local host = require "mc.host"
    local files = {} -- the whole application, as it is
    local list = assert(io.popen("cd '" .. host.root .. "' && find scripts -type f -name '*.lua'"))
    for f in list:lines() do
      local h = assert(io.open(host.root .. "/" .. f))
      files[f] = h:read("a")
      h:close()
    end
    list:close()
    return server.start({ files = files, env = env }), files
  end

  -- what scripts/config.lua requires of `web`, besides the services' URLs
  local REQUIRED = { APP_URL = "http://127.0.0.1:1", ENCRYPTION_KEYS = "k1:" .. string.rep("A", 43) .. "=",
    SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret" }

  local function with(env)
    local out = {}
    for k, v in pairs(REQUIRED) do out[k] = v end
    for k, v in pairs(env) do out[k] = v end
    return out
  end

  it("refuses to start without APP_URL or with a short ADMIN_TOKEN, naming each, at once", function()
    local host = require "mc.host"
    local t0 = host.time()
    local r = proc.mc({ "web" }, { env = with({ APP_URL = false, HEROKU_APP_NAME = false, ADMIN_TOKEN = "short",
      PORT = tostring(server.free_port()) }) })
    assert.is_true(host.time() - t0 < 1, "took " .. (host.time() - t0) .. " s")
    assert.equal(1, r.code)
    assert.matches("APP_URL is required but not set", r.stderr, 1, true)
    assert.matches("ADMIN_TOKEN: expected at least 16 characters, got 5", r.stderr, 1, true)
    assert.is_nil(r.stderr:find("short", 1, true)) -- a secret is never echoed
    r = proc.mc({ "worker" }, { env = with({ HEROKU_API_TOKEN = false, HEROKU_APP_NAME = false }) })
    assert.equal(1, r.code)
    assert.matches("HEROKU_API_TOKEN is required but not set", r.stderr, 1, true)
    assert.matches("HEROKU_APP_NAME is required but not set", r.stderr, 1, true)
  end)

  it("answers 200 with the versions when Postgres and Redis answer", function()
    local srv = start(with({}))
    local r = srv:request("GET", "/health")
    srv:stop()
    local doc = json.decode(r.body)
    assert.equal(200, r.status, r.body)
    assert.same({ postgres = "ok", redis = "ok" }, doc.checks)
    assert.equal("Lua 5.4.4", doc.versions.lua)
    assert.truthy(doc.versions.libmicrohttpd and doc.versions.libpq and doc.versions.hiredis)
  end)

  it("answers 503 and says which service is down", function()
    local dead = server.free_port()
    local srv = start(with({ REDIS_URL = "redis://127.0.0.1:" .. dead .. "/0" }))
    local r = srv:request("GET", "/health")
    srv:stop()
    assert.equal(503, r.status)
    local doc = json.decode(r.body)
    assert.equal("ok", doc.checks.postgres)
    assert.equal("connection refused", doc.checks.redis)
  end)
end)

-- held(port) -> the TCP connections the server on the loopback port still holds
-- (established, or closed by the peer but not by the server), from /proc/net/tcp
local function held(port)
  local n, f = 0, assert(io.open("/proc/net/tcp"))
  local mine = string.format(":%04X$", port)
  for line in f:lines() do
    local addr, st = line:match("^%s*%d+:%s+(%x+:%x+)%s+%x+:%x+%s+(%x%x)")
    if addr and addr:find(mine) and (st == "01" or st == "08") then n = n + 1 end
  end
  f:close()
  return n
end

describe("connection limits", function()
  it("closes connections over WEB_MAX_CONNECTIONS_PER_IP and serves the others", function()
    -- libmicrohttpd counts per server thread: one thread makes the limit exact
    local srv = server.start({ files = { ["scripts/app.lua"] = APP },
      env = { WEB_MAX_CONNECTIONS_PER_IP = "2", WEB_THREADS = "1" } })
    -- the start-up probe's connection must be gone before the count starts
    proc.wait_for(function() return held(srv.port) == 0 end, 5, "the start-up probe's connection to close")
    local conns = {}
    for i = 1, 3 do conns[i] = srv:connect() end
    -- the server takes them in order: the third is over the limit
    assert.truthy(srv:wait_log("connection limit", 5), srv:log())
    local served, closed = 0, 0
    for _, c in ipairs(conns) do
      c:settimeout(5)
      c:send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = server.read_response(c)
      if res and res.status == 200 then served = served + 1 else closed = closed + 1 end
      c:close()
    end
    local log = srv:log()
    srv:stop()
    assert.equal(2, served)
    assert.equal(1, closed)
    assert.matches("connection limit", log, 1, true)
  end)
end)
