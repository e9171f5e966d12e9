-- support.server: run `multiconnect web` (the real binary) on a free port with a
-- scripts/ folder written by the spec, and talk raw HTTP/1.1 to it over
-- lua-socket, so that specs control every byte (garbage, stalls, half bodies).
local socket = require "socket"
local proc = require "support.process"

local _M = {}

-- A port nobody listens on right now (the kernel picks it).
function _M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local daemon = require "support.daemon"
local Server = setmetatable({}, { __index = daemon.Daemon })
Server.__index = Server

-- accepting(port) -> true when something accepts a TCP connection on the
-- loopback port now
function _M.accepting(port)
  local c = socket.connect("127.0.0.1", port)
  if c then c:close() end
  return c ~= nil
end

-- wait_accepting(port, seconds, alive?) -> true once the port accepts; false
-- when time ran out, or alive() said no first (the server died).
function _M.wait_accepting(port, seconds, alive)
  local up = false
  proc.wait_for(function()
    up = _M.accepting(port)
    return up or (alive and not alive())
  end, seconds)
  return up
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local data = f:read("a")
  f:close()
  return data
end

-- http() -> base URL, stop(), port: spec/support/http_server.lua (the test
-- HTTP server: /delay/MS, /status/N, ...) run by this binary on a free port,
-- once it accepts; raises with its output when it does not start.
function _M.http()
  local host = require "mc.host"
  local port, pidfile, log = _M.free_port(), os.tmpname(), os.tmpname()
  local cmd = string.format("%s run %s %d >%s 2>&1 & echo $! >%s", proc.quote(host.exe),
    proc.quote(host.root .. "/spec/support/http_server.lua"), port, proc.quote(log), proc.quote(pidfile))
  assert(os.execute(cmd))
  local pid = assert(tonumber(slurp(pidfile)), "no pid")
  os.remove(pidfile)
  local function stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.remove(log)
  end
  if _M.wait_accepting(port, 10) then -- (the ASan twin starts slower)
    return "http://127.0.0.1:" .. port, stop, port
  end
  local out = slurp(log)
  stop()
  error("test server did not start: " .. out)
end

-- start{files = {["scripts/app.lua"] = "..."}, env = {...}} -> server, once it accepts
function _M.start(opts)
  local port = _M.free_port()
  local env = { PORT = tostring(port), WEB_BIND = "127.0.0.1" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local self = daemon.start({ command = "web", files = opts.files, env = env, class = Server })
  self.port = port
  if _M.wait_accepting(port, 5, function() return self:alive() end) then return self end
  local out = self:log()
  self:stop()
  error("web server did not start:\n" .. out)
end

-- ---- raw HTTP/1.1 ----------------------------------------------------------

function Server:connect()
  local c = assert(socket.connect("127.0.0.1", self.port))
  c:settimeout(10)
  return c
end

-- Reads one response from c: {status, headers (lower-cased), body} | nil, err
function _M.read_response(c, head_only)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  if not status then return nil, "bad status line: " .. line end
  local headers = {}
  while true do
    local h = assert(c:receive("*l"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    headers[k:lower()] = v
  end
  local body = ""
  local n = tonumber(headers["content-length"] or "0")
  if n > 0 and not head_only then body = assert(c:receive(n)) end
  return { status = status, headers = headers, body = body }
end

-- request(method, path, {headers =, body =, conn =}) -> response (table)
function Server:request(method, path, opts)
  opts = opts or {}
  local c = opts.conn or self:connect()
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
  for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if opts.body then lines[#lines + 1] = "Content-Length: " .. #opts.body end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (opts.body or "")))
  local res, err = _M.read_response(c, method == "HEAD")
  if not opts.conn then c:close() end
  assert(res, err)
  return res
end

return _M
