-- The limits of `multiconnect web` against hostile clients, over real HTTP:
-- oversized request heads always get a status, and clients that trickle their
-- headers neither hold a connection past WEB_HEADER_TIMEOUT nor keep a normal
-- client out. Timings are asserted with generous bounds only; bench/web_abuse
-- measures them.
local server = require "support.server"
local socket = require "socket"
local json = require "mc.json"
local host = require "mc.host"

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

  it("answers 414 to 3,000 empty parameters and to a 9 KB query, 431 to 9 KB of headers (WEB_MAX_HEADER: 8 KB)", function()
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

