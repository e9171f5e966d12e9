-- multiconnect web with handlers that wait on the network: with one server
-- thread, requests whose upstream (HTTP, Redis, Postgres) takes a second each
-- are served together, and the thread answers other requests meanwhile. A
-- server that held its thread through each wait would take one second per
-- request, in a queue.
local server = require "support.server"
local json = require "mc.json"
local socket = require "socket"

local function app(version)
  return string.format([[
local web = require "mc.web"
local http = require "mc.http"
local conns = require "mc.conns"
local app = web.router()
local V = %d
app:get("/fast", function(req) return 200, { v = V } end)
app:get("/http", function(req)
  local res, err = http.get(os.getenv("UPSTREAM") .. "/delay/1000")
  if not res then return 502, { error = err } end
  return 200, { v = V, upstream = res.body, ua = req.headers["user-agent"] }
end)
app:get("/redis", function(req)
  local r = assert(conns.redis())
  local got, err = r:call("BLPOP", "mc:web_yield:" .. req.id, 1)  -- nothing comes: 1 s
  if got == nil then return 502, { error = err } end
  return 200, { v = V, timed_out = got == mc.null }
end)
app:get("/pg", function(req)
  local c = assert(conns.pg())
  local rows, err = c:query("SELECT pg_sleep(1), 1 AS n")
  if not rows then return 502, { error = err } end
  return 200, { v = V, n = rows[1].n }
end)
return app
]], version)
end

-- Sends one GET on a fresh connection per path; -> the connections.
local function send_all(srv, paths)
  local conns = {}
  for i, path in ipairs(paths) do
    local c = srv:connect()
    c:settimeout(30)
    assert(c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nUser-Agent: spec-" .. i .. "\r\n\r\n"))
    conns[i] = c
  end
  return conns
end

local function read_all(conns)
  local out = {}
  for i, c in ipairs(conns) do
    out[i] = assert(server.read_response(c))
    c:close()
  end
  return out
end

-- How long GET /fast takes, on its own connection.
local function fast_seconds(srv)
  local t = socket.gettime()
  local r = srv:request("GET", "/fast")
  assert.equal(200, r.status)
  return socket.gettime() - t
end

describe("web handlers that wait on the network, one server thread", function()
  local upstream, stop_upstream, srv

  setup(function()
    upstream, stop_upstream = server.http()
  end)
  teardown(function() if stop_upstream then stop_upstream() end end)

  before_each(function()
    srv = server.start({ files = { ["scripts/app.lua"] = app(1) },
      env = { WEB_THREADS = "1", UPSTREAM = upstream, WEB_CONNECTIONS = "5" } })
  end)
  after_each(function() srv:stop() end)

  -- together(paths) -> the answers, the seconds they all took, and how long /fast
  -- took once every request of paths was waiting
  local function together(paths)
    local t0 = socket.gettime()
    local conns = send_all(srv, paths)
    socket.sleep(0.2) -- every one of them waits now
    local fast = fast_seconds(srv)
    local res = read_all(conns)
    return res, socket.gettime() - t0, fast
  end

  it("serves 20 slow HTTP upstream calls together, and other requests meanwhile", function()
    local paths = {}
    for i = 1, 20 do paths[i] = "/http" end
    local res, total, fast = together(paths)
    for i, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      local doc = json.decode(r.body)
      assert.equal("slept", doc.upstream)
      assert.equal("spec-" .. i, doc.ua) -- headers read after the wait, its own request's
      assert.truthy(r.headers["x-request-id"])
    end
    -- one thread holding each wait would take 20 s; /fast would wait for all
    assert.is_true(total < 10, "20 requests of 1 s took " .. total .. " s")
    assert.is_true(fast < 0.9, "/fast took " .. fast .. " s while the slow ones waited")
  end)

  it("does the same for Redis and Postgres waits, the connections capped per thread", function()
    local paths = {}
    for i = 1, 10 do paths[i] = i % 2 == 0 and "/redis" or "/pg" end
    local res, total, fast = together(paths)
    for i, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      local doc = json.decode(r.body)
      if i % 2 == 0 then assert.is_true(doc.timed_out) else assert.equal(1, doc.n) end
    end
    assert.is_true(total < 6, "10 requests of 1 s took " .. total .. " s")
    assert.is_true(fast < 0.9, "/fast took " .. fast .. " s while the slow ones waited")
  end)

  it("finishes requests that wait across a reload on the code they started with", function()
    local conns = send_all(srv, { "/http", "/http", "/http" })
    socket.sleep(0.2)
    srv:write("scripts/app.lua", app(2))
    srv:signal("HUP")
    assert.truthy(srv:wait_log("msg=reloaded", 5), srv:log())
    local r = srv:request("GET", "/fast")
    assert.equal(2, json.decode(r.body).v)
    for _, res in ipairs(read_all(conns)) do
      assert.equal(200, res.status, res.body)
      assert.equal(1, json.decode(res.body).v)
    end
    assert.equal(2, json.decode(srv:request("GET", "/fast").body).v)
  end)

  it("drains waiting requests on SIGTERM, answered with Connection: close", function()
    local conns = send_all(srv, { "/http", "/redis", "/pg" })
    socket.sleep(0.2)
    srv:signal("TERM")
    local res = read_all(conns)
    assert.is_true(srv:wait(10))
    for _, r in ipairs(res) do
      assert.equal(200, r.status, r.body)
      assert.equal("close", r.headers["connection"])
    end
    assert.equal(0, srv:exit_status())
  end)
end)
