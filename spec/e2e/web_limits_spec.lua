-- The limits of `multiconnect web` against hostile clients, over real HTTP:
-- oversized request heads always get a status, and clients that trickle their
-- headers neither hold a connection past WEB_HEADER_TIMEOUT nor keep a normal
-- client out. Timings are asserted with generous bounds only; bench/web_abuse
-- measures them.
local server = require "support.server"
local socket = require "socket"
local json = require "mc.json"
local host = require "mc.host"
local proc = require "support.process"

local APP = [[
local web = require "mc.web"
local app = web.router()
app:get("/health", function(req) return 200, { ok = true } end)
app:get("/query", function(req)
  local n = 0
  for _ in pairs(req.query) do n = n + 1 end
  return 200, { n = n }
end)
return app
]]

-- raw(srv, text) -> the response to one request sent as raw bytes | nil, err
local function raw(srv, text)
  local c = srv:connect()
  c:settimeout(5)
  c:send(text)
  local r, err = server.read_response(c)
  c:close()
  return r, err
end

local function query_of(n)
  local parts = {}
  for i = 1, n do parts[i] = "p" .. i .. "=v" .. i end
  return table.concat(parts, "&")
end

describe("oversized request heads", function()
  local srv
  setup(function()
    srv = server.start({ files = { ["scripts/app.lua"] = APP }, env = { WEB_THREADS = "2" } })
  end)
  teardown(function() srv:stop() end)

  it("serves a query of 60 parameters", function()
    local r = assert(raw(srv, "GET /query?" .. query_of(60) .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.equal(200, r.status)
    assert.equal(60, json.decode(r.body).n)
  end)

  it("answers 414 with a JSON body to 150 query parameters (a 1.3 KB URL)", function()
    local r = assert(raw(srv, "GET /query?" .. query_of(150) .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.equal(414, r.status)
    assert.equal("too many query parameters", json.decode(r.body).error)
  end)

  it("answers 414 to 3,000 empty parameters and to a 9 KB query, "
    .. "431 to 9 KB of headers (WEB_MAX_HEADER: 8 KB)", function()
    local r = assert(raw(srv, "GET /query?" .. string.rep("&", 3000) .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.equal(414, r.status)
    r = assert(raw(srv, "GET /query?a=" .. string.rep("x", 9000) .. " HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.equal(414, r.status)
    assert.equal("URI too long", json.decode(r.body).error)
    local headers = {}
    for i = 1, 3 do headers[i] = "X-Header-" .. i .. ": " .. string.rep("v", 3000) end
    r = assert(raw(srv, "GET /health HTTP/1.1\r\nHost: x\r\n" .. table.concat(headers, "\r\n") .. "\r\n\r\n"))
    assert.equal(431, r.status)
    assert.equal("request headers too large", json.decode(r.body).error)
    -- many small headers fill the records' half of the memory first: libmicrohttpd's own 431
    for i = 1, 300 do headers[i] = "X-Header-" .. i .. ": v" end
    r = assert(raw(srv, "GET /health HTTP/1.1\r\nHost: x\r\n" .. table.concat(headers, "\r\n") .. "\r\n\r\n"))
    assert.equal(431, r.status)
  end)

  it("answers 414 or 431 to heads past what the connection's memory holds, and keeps serving", function()
    for _, text in ipairs({
      "GET /query?a=" .. string.rep("x", 40000) .. " HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("h", 40000) .. "\r\n\r\n",
    }) do
      local r = assert(raw(srv, text))
      assert.truthy(r.status == 414 or r.status == 431, r.status)
    end
    assert.equal(200, srv:request("GET", "/health").status)
  end)
end)

describe("pipelined requests", function()
  it("are answered in order, and garbage after them closes only that connection", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = APP }, env = { WEB_THREADS = "2" } })
    local c = srv:connect()
    c:send("GET /query?a=1 HTTP/1.1\r\nHost: x\r\n\r\nGET /query?a=1&b=2 HTTP/1.1\r\nHost: x\r\n\r\n"
      .. "GET /health HTTP/1.1\r\nHost: x\r\n\r\n\0\1\2garbage \255\254 HTTP/9\r\n\r\n")
    local got = {}
    for i = 1, 3 do
      local r = assert(server.read_response(c))
      got[i] = r.status == 200 and (json.decode(r.body).n or "health") or r.status
    end
    local last = server.read_response(c) -- a 400 for the garbage, or the connection closed
    c:close()
    local health = srv:request("GET", "/health").status
    srv:stop()
    assert.same({ 1, 2, "health" }, got)
    assert.truthy(last == nil or last.status == 400, last and last.status)
    assert.equal(200, health)
  end)
end)

-- open_sending(port, n, text) -> up to n sockets that each sent text, then nothing
local function open_sending(port, n, text)
  local conns = {}
  for _ = 1, n do
    local c = socket.tcp()
    c:settimeout(2)
    if c:connect("127.0.0.1", port) then
      c:send(text)
      c:settimeout(0)
      conns[#conns + 1] = c
    else
      c:close()
    end
  end
  return conns
end

-- open_trickling(port, n) -> sockets that each sent a request line and no more
local function open_trickling(port, n)
  return open_sending(port, n, "GET /health HTTP/1.1\r\n")
end

-- closed_by_server(c) -> true when the server closed c (EOF or reset)
local function closed_by_server(c)
  local _, err = c:receive(1)
  return err ~= "timeout"
end

-- ulimit_n() -> this process's open-files limit
local function ulimit_n()
  local p = io.popen("ulimit -n")
  local n = tonumber(p:read("l"))
  p:close()
  return n or 1024
end

describe("slow clients", function()

  it("cannot hold a connection past WEB_HEADER_TIMEOUT by trickling header lines", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = APP },
      env = { WEB_THREADS = "2", WEB_HEADER_TIMEOUT = "2", WEB_IDLE_TIMEOUT = "30" } })
    local c = open_trickling(srv.port, 1)[1]
    local t0, closed_at = host.now(), nil
    while host.now() - t0 < 6 do -- the idle timeout (30 s) never fires: a byte every 0.3 s
      if closed_by_server(c) then closed_at = host.now() - t0; break end
      c:send("X: y\r\n")
      socket.sleep(0.3)
    end
    c:close()
    srv:stop()
    assert.truthy(closed_at, "the trickling connection was still open after 6 s (3x the deadline)")
    assert.truthy(closed_at > 1, "closed after " .. tostring(closed_at) .. " s, before its deadline")
  end)

  it("answers /health while more connections than WEB_MAX_CONNECTIONS trickle their headers", function()
    local n = math.min(1500, ulimit_n() // 2 - 100) -- each connection costs an fd here and one in the server
    local limit = n * 2 // 3
    local srv = server.start({ files = { ["scripts/app.lua"] = APP }, env = { WEB_THREADS = "2",
      WEB_HEADER_TIMEOUT = "3", WEB_IDLE_TIMEOUT = "30", WEB_MAX_CONNECTIONS = tostring(limit) } })
    local conns = open_trickling(srv.port, n)
    local worst, answered, asked = 0, 0, 0
    local t0 = host.now()
    while host.now() - t0 < 8 do
      for i, c in ipairs(conns) do
        if c and not c:send("X-Trickle: " .. i .. "\r\n") then conns[i] = false; c:close() end
      end
      local alive = {}
      for _, c in ipairs(conns) do if c then alive[#alive + 1] = c end end
      conns = alive
      for _ = 1, n - #conns do conns[#conns + 1] = open_trickling(srv.port, 1)[1] end -- the attacker reconnects
      local t = host.now()
      asked = asked + 1
      local ok, r = pcall(srv.request, srv, "GET", "/health")
      if ok and r.status == 200 then answered = answered + 1 end
      worst = math.max(worst, host.now() - t)
      socket.sleep(0.5)
    end
    for _, c in ipairs(conns) do c:close() end
    local log = srv:log()
    local _, lines = log:gsub("\n", "")
    srv:stop()
    assert.equal(asked, answered)
    local kinds = {}
    for msg in log:gmatch('msg="?([^"\n]-)"? [%w_]+=') do kinds[msg] = (kinds[msg] or 0) + 1 end
    assert.truthy(lines < 1000, lines .. " log lines: every closed client logged? " .. require("mc.json").encode(kinds))
    assert.truthy(worst < 5, "the slowest /health took " .. worst .. " s")
  end)
end)

-- open_body_tricklers(port, n, length) -> sockets that each sent a whole request
-- head for a body of `length` bytes at once (slowhttptest's "slow body" attack)
local function open_body_tricklers(port, n, length)
  return open_sending(port, n, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    .. "Content-Length: " .. length .. "\r\n\r\n")
end

-- timed_health(srv) -> status | nil, seconds taken; nil when no answer came
local function timed_health(srv)
  local t = host.now()
  local ok, r = pcall(srv.request, srv, "GET", "/health")
  return ok and r.status or nil, host.now() - t
end

describe("slow bodies", function()
  local BODY_APP = APP:gsub("return app", [[
app:post("/echo", function(req) return 200, { bytes = #req.body } end)
return app]])

  it("a body trickled a byte at a time is cut at WEB_REQUEST_TIMEOUT, not at the idle timeout", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = BODY_APP },
      env = { WEB_THREADS = "2", WEB_REQUEST_TIMEOUT = "2", WEB_IDLE_TIMEOUT = "30" } })
    local c = open_body_tricklers(srv.port, 1, 1000)[1]
    local t0, closed_at, sent = host.now(), nil, 0
    while host.now() - t0 < 8 do -- a byte every 0.5 s: never idle long enough for the 30 s timeout
      if closed_by_server(c) then closed_at = host.now() - t0; break end
      if c:send("x") then sent = sent + 1 end
      socket.sleep(0.5)
    end
    c:close()
    local status = timed_health(srv)
    srv:stop()
    assert.truthy(closed_at, "the trickling body was still open after 8 s (4x the deadline)")
    assert.truthy(closed_at > 1.5, "closed after " .. closed_at .. " s, before its deadline")
    assert.truthy(sent >= 3, "only " .. sent .. " bytes went out: the body was not trickling")
    assert.equal(200, status)
  end)

  it("answers /health within a second while hundreds of connections trickle request bodies", function()
    local n = math.min(600, ulimit_n() // 2 - 100)
    local srv = server.start({ files = { ["scripts/app.lua"] = BODY_APP }, env = { WEB_THREADS = "2",
      WEB_REQUEST_TIMEOUT = "3", WEB_IDLE_TIMEOUT = "30", WEB_MAX_CONNECTIONS = tostring(n + 50) } })
    local conns = open_body_tricklers(srv.port, n, 100000)
    local opened = #conns
    local worst, answered, asked, first_closed, all_closed = 0, 0, 0, nil, nil
    local t0 = host.now()
    while host.now() - t0 < 9 and not all_closed do
      local open = 0
      for i, c in ipairs(conns) do -- a byte each, every second
        if c and (closed_by_server(c) or not c:send("x")) then
          conns[i] = false
          c:close()
          first_closed = first_closed or host.now() - t0
        elseif c then
          open = open + 1
        end
      end
      if open == 0 then all_closed = host.now() - t0 end
      local status, took = timed_health(srv)
      asked = asked + 1
      if status == 200 then answered = answered + 1 end
      worst = math.max(worst, took)
      socket.sleep(1)
    end
    for _, c in ipairs(conns) do if c then c:close() end end
    srv:stop()
    assert.equal(n, opened)
    assert.equal(asked, answered)
    assert.truthy(worst < 1, "the slowest /health took " .. worst .. " s")
    assert.truthy(first_closed and first_closed > 2, "the first trickler closed at " .. tostring(first_closed))
    assert.truthy(all_closed, "tricklers still open after 9 s (WEB_REQUEST_TIMEOUT: 3 s)")
  end)

  -- A body that stops coming is closed by the guard's sweep at WEB_REQUEST_TIMEOUT, not
  -- at the next byte (which never comes) nor at WEB_IDLE_TIMEOUT.
  it("a stalled body (the head, then nothing) is closed at WEB_REQUEST_TIMEOUT", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = BODY_APP },
      env = { WEB_THREADS = "2", WEB_REQUEST_TIMEOUT = "2", WEB_IDLE_TIMEOUT = "30" } })
    local c = open_body_tricklers(srv.port, 1, 1000)[1]
    c:send("x")
    local t0 = host.now()
    local closed = proc.wait_for(function() return closed_by_server(c) end, 8)
    local closed_at = host.now() - t0
    c:close()
    srv:stop()
    assert.truthy(closed, "the stalled body was still open after 8 s (4x WEB_REQUEST_TIMEOUT)")
    assert.truthy(closed_at > 1.5, "closed after " .. closed_at .. " s, before its deadline")
  end)

  -- A connection awaiting its body stays in the guard's care (evictable, swept) until
  -- the body is in: past WEB_MAX_CONNECTIONS the oldest trickler makes room for a new
  -- client, not the new client for the tricklers.
  it("answers /health while more connections than WEB_MAX_CONNECTIONS trickle bodies", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = BODY_APP }, env = { WEB_THREADS = "2",
      WEB_REQUEST_TIMEOUT = "8", WEB_IDLE_TIMEOUT = "30", WEB_MAX_CONNECTIONS = "200" } })
    local conns = open_body_tricklers(srv.port, 300, 100000)
    assert.equal(300, #conns) -- past the limit, or this proves nothing
    local statuses, worst = {}, 0
    local t0 = host.now()
    while host.now() - t0 < 5 do -- within WEB_REQUEST_TIMEOUT: no trickler has timed out yet
      for i, c in ipairs(conns) do
        if c and (closed_by_server(c) or not c:send("x")) then conns[i] = false; c:close() end
      end
      local status, took = timed_health(srv)
      statuses[#statuses + 1] = status or "no answer"
      worst = math.max(worst, took)
      socket.sleep(1)
    end
    for _, c in ipairs(conns) do if c then c:close() end end
    srv:stop()
    for _, status in ipairs(statuses) do assert.equal(200, status, json.encode(statuses)) end
    assert.truthy(worst < 1, "the slowest /health took " .. worst .. " s")
  end)
end)

describe("hostile bodies and bytes", function()
  local srv
  setup(function()
    srv = server.start({ files = { ["scripts/app.lua"] = APP:gsub("return app", [[
app:post("/echo", function(req)
  local doc, err = req.json()
  if not doc then return 400, { error = err } end
  return 200, { bytes = #req.body }
end)
return app]]) }, env = { WEB_THREADS = "2", WEB_MAX_BODY = "65536" } })
  end)
  teardown(function() srv:stop() end)

  -- each case: the answer it gets, then a normal client's
  local function then_health()
    local status, took = timed_health(srv)
    assert.equal(200, status)
    assert.truthy(took < 1, "/health took " .. took .. " s")
  end

  it("answers 413 with JSON to a body over WEB_MAX_BODY, announced or chunked, without reading it", function()
    local c = srv:connect()
    c:send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n" .. string.rep("x", 65536))
    local r = assert(server.read_response(c))
    c:close()
    assert.equal(413, r.status)
    assert.equal("request body too large", json.decode(r.body).error)
    then_health()
    c = srv:connect()
    c:send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    local chunk = string.rep("y", 16384)
    for _ = 1, 5 do c:send(string.format("%x\r\n%s\r\n", #chunk, chunk)) end
    c:send("0\r\n\r\n")
    r = assert(server.read_response(c))
    c:close()
    assert.equal(413, r.status)
    assert.equal("request body too large", json.decode(r.body).error)
    then_health()
  end)

  it("answers 400 to JSON nested 10,000 deep, and answers invalid UTF-8 in a body, the URL "
    .. "and the headers", function()
    local r = srv:request("POST", "/echo", { body = string.rep("[", 10000) .. string.rep("]", 10000) })
    assert.equal(400, r.status)
    assert.matches("nest", json.decode(r.body).error)
    then_health()
    -- mc.json passes a string's bytes through; the install callback checks its fields'
    -- UTF-8 (hostile_input_spec): here the request is answered, and the next one too
    r = srv:request("POST", "/echo", { body = '{"a": "\255\254\192\128"}' })
    assert.truthy(r.status == 200 or r.status == 400, r.status)
    then_health()
    r = assert(raw(srv, "GET /query?\255\254=\192\128&%ff%fe=%c0%80 HTTP/1.1\r\nHost: x\r\nX-Bytes: \255\254\r\n\r\n"))
    assert.truthy(r.status == 200 or r.status == 400, r.status)
    then_health()
  end)

  it("answers /health within a second while 1,000 connections sit silent", function()
    local n = math.min(1000, ulimit_n() // 2 - 100)
    local conns = open_sending(srv.port, n, "")
    assert.equal(n, #conns)
    for _ = 1, 3 do then_health() end
    for _, c in ipairs(conns) do c:close() end
    then_health()
  end)
end)
