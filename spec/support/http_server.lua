-- A small HTTP/1.1 server for the mc.http specs, run as its own process:
--   bin/multiconnect run spec/support/http_server.lua PORT
-- Listens on 127.0.0.1:PORT; one coroutine per connection (LuaSocket, select),
-- keep-alive, Content-Length bodies. Routes:
--   /echo            200, JSON {method, path, query, args, headers, body, conn, peer_port}
--                    (conn: this connection's number, counted from 1, for keep-alive checks)
--   /status/N        status N, body "status N"
--   /headers?k=v...  200, every query pair as a response header (repeats allowed)
--   /delay/MS        waits MS milliseconds, then 200 "slept"
--   /big/N           N bytes of "x" with a Content-Length
--   /stream/N        N bytes of "x" without a Content-Length, then closes
--   /redirect        302 to /echo;  /loop: 302 to itself
-- Anything that does not look like HTTP (a TLS hello) gets a 400 and a close.
local socket = require "socket"
local json = require "mc.json"

local port = tonumber(arg[1]) or error("usage: http_server.lua PORT")
local server = assert(socket.bind("127.0.0.1", port))
server:settimeout(0)

local REASONS = { [200] = "OK", [302] = "Found", [400] = "Bad Request", [404] = "Not Found" }

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- "a=1&b=2&b=3" -> {a = "1", b = {"2", "3"}} and the pairs in order.
local function parse_query(q)
  local args, pairs_ = {}, {}
  for k, v in (q or ""):gmatch("([^&=]+)=?([^&]*)") do
    k, v = unescape(k), unescape(v)
    pairs_[#pairs_ + 1] = { k, v }
    local old = args[k]
    if old == nil then args[k] = v
    elseif type(old) == "table" then old[#old + 1] = v
    else args[k] = { old, v } end
  end
  return args, pairs_
end

-- One connection. Yields ("read", sock), ("write", sock) or ("sleep", until).
local function connection(sock, id)
  local _, peer_port = sock:getpeername()
  local buf = ""

  local function fill()
    local data, err, partial = sock:receive(8192)
    data = data or partial
    if data and #data > 0 then buf = buf .. data return true end
    if err == "timeout" then coroutine.yield("read", sock) return true end
    return false
  end

  local function send(data)
    local i = 1
    while i <= #data do
      local last, err, sent = sock:send(data, i)
      if last then i = last + 1
      elseif err == "timeout" then i = sent + 1 coroutine.yield("write", sock)
      else return false end
    end
    return true
  end

  local function read_request()
    while not buf:find("\r\n\r\n", 1, true) do
      if #buf > 0 and not buf:match("^%u") then return nil, "not http" end
      if #buf > 65536 or not fill() then return nil end
    end
    local e = select(2, buf:find("\r\n\r\n", 1, true))
    local head = buf:sub(1, e)
    buf = buf:sub(e + 1)
    local method, target = head:match("^(%u+) (%S+) HTTP/1%.%d\r\n")
    if not method then return nil, "not http" end
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      name = name:lower()
      headers[name] = headers[name] and headers[name] .. ", " .. value or value
    end
    local len = tonumber(headers["content-length"] or "0")
    while #buf < len do
      if not fill() then return nil end
    end
    local body = buf:sub(1, len)
    buf = buf:sub(len + 1)
    local path, query = target:match("^([^?]*)%??(.*)$")
    return { method = method, path = path, query = query, headers = headers, body = body }
  end

  local function respond(status, headers, body, opts)
    local out = { ("HTTP/1.1 %d %s\r\n"):format(status, REASONS[status] or "Status") }
    for _, h in ipairs(headers) do out[#out + 1] = h[1] .. ": " .. h[2] .. "\r\n" end
    if not (opts and opts.no_length) then out[#out + 1] = "Content-Length: " .. #body .. "\r\n" end
    out[#out + 1] = "\r\n"
    if not (opts and opts.head) then out[#out + 1] = body end
    return send(table.concat(out))
  end

  local function route(req)
    local path, n = req.path
    if path == "/echo" then
      local body = assert(json.encode {
        method = req.method, path = path, query = req.query, args = parse_query(req.query),
        headers = req.headers, body = req.body, conn = id, peer_port = tonumber(peer_port),
      })
      return 200, { { "Content-Type", "application/json" } }, body
    end
    n = path:match("^/status/(%d+)$")
    if n then return tonumber(n), { { "Content-Type", "text/plain" } }, "status " .. n end
    if path == "/headers" then
      local hs = {}
      for _, kv in ipairs(select(2, parse_query(req.query))) do hs[#hs + 1] = kv end
      return 200, hs, "ok"
    end
    n = path:match("^/delay/(%d+)$")
    if n then
      coroutine.yield("sleep", socket.gettime() + tonumber(n) / 1000)
      return 200, {}, "slept"
    end
    n = path:match("^/big/(%d+)$")
    if n then return 200, { { "Content-Type", "text/plain" } }, string.rep("x", tonumber(n)) end
    n = path:match("^/stream/(%d+)$")
    if n then return 200, { { "Connection", "close" } }, string.rep("x", tonumber(n)), { no_length = true } end
    if path == "/redirect" then return 302, { { "Location", "/echo" } }, "" end
    if path == "/loop" then return 302, { { "Location", "/loop" } }, "" end
    return 404, {}, "no route"
  end

  while true do
    local req, err = read_request()
    if not req then
      if err then respond(400, { { "Connection", "close" } }, "bad request") end
      break
    end
    local status, headers, body, opts = route(req)
    opts = opts or {}
    opts.head = req.method == "HEAD"
    if not respond(status, headers, body, opts) or opts.no_length then break end
    if (req.headers.connection or ""):lower() == "close" then break end
  end
  sock:close()
end

-- The loop: accept, and resume each connection when its socket is ready or its
-- sleep is over.
local readers, writers, sleepers = {}, {}, {}
local accepted = 0

local function resume(co, sock, ...)
  local ok, what, arg = coroutine.resume(co, ...)
  if not ok then
    io.stderr:write("http_server: ", tostring(what), "\n")
    sock:close()
  elseif what == "read" then readers[arg] = co
  elseif what == "write" then writers[arg] = co
  elseif what == "sleep" then sleepers[co] = { arg, sock } end
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  return out
end

while true do
  local wait = nil
  for _, s in pairs(sleepers) do
    local left = math.max(0, s[1] - socket.gettime())
    if not wait or left < wait then wait = left end
  end
  local r = keys(readers)
  r[#r + 1] = server
  local ready_r, ready_w = socket.select(r, keys(writers), wait)
  for _, s in ipairs(ready_r) do
    if s == server then
      local client = server:accept()
      if client then
        client:settimeout(0)
        accepted = accepted + 1
        resume(coroutine.create(connection), client, client, accepted)
      end
    elseif readers[s] then
      local co = readers[s]
      readers[s] = nil
      resume(co, s)
    end
  end
  for _, s in ipairs(ready_w) do
    local co = writers[s]
    writers[s] = nil
    if co then resume(co, s) end
  end
  local now, due = socket.gettime(), {}
  for co, s in pairs(sleepers) do
    if s[1] <= now then due[co] = s[2] end
  end
  for co, sock in pairs(due) do
    sleepers[co] = nil
    resume(co, sock)
  end
end
