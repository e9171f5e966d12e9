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

local Server = {}
Server.__index = Server

-- start{files = {["scripts/app.lua"] = "..."}, env = {...}} -> server
function _M.start(opts)
  local root, cleanup = proc.tmpdir()
  for path, content in pairs(opts.files or {}) do
    os.execute("mkdir -p " .. proc.quote(root .. "/" .. path:match("^(.*)/")))
    proc.write(root .. "/" .. path, content)
  end
  local port = _M.free_port()
  local log = root .. "/web.log"
  local env = { "MC_ROOT=" .. proc.quote(root), "PORT=" .. port, "WEB_BIND=127.0.0.1" }
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. proc.quote(v) end
  local exit_path = root .. "/exit-status"
  -- a subshell records the exit status; signals go to the server itself
  local cmd = string.format("(env %s %s web >%s 2>&1; echo $? >%s) >/dev/null 2>&1 & echo $!",
    table.concat(env, " "), proc.quote(proc.exe), proc.quote(log), proc.quote(exit_path))
  local p = io.popen(cmd)
  local shell = p:read("l")
  p:close()
  local pid
  for _ = 1, 200 do
    local q = io.popen("pgrep -P " .. shell)
    pid = q:read("l")
    q:close()
    if pid then break end
    socket.sleep(0.01)
  end
  assert(pid, "web server process did not appear")
  local self = setmetatable({ root = root, port = port, pid = pid, log_path = log,
    exit_path = exit_path, cleanup = cleanup }, Server)
  for _ = 1, 200 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() return self end
    if not self:alive() then break end
    socket.sleep(0.025)
  end
  local out = self:log()
  self:stop()
  error("web server did not start:\n" .. out)
end

function Server:alive()
  return os.execute("kill -0 " .. self.pid .. " 2>/dev/null") == true
end

function Server:log()
  local f = io.open(self.log_path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- The exit status once the server has ended, else nil.
function Server:exit_status()
  for _ = 1, 100 do
    local f = io.open(self.exit_path)
    if f then
      local s = f:read("n")
      f:close()
      if s then return s end
    end
    socket.sleep(0.02)
  end
  return nil
end

function Server:signal(name)
  os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null")
end

-- wait() -> exit status, once the process has ended (bounded)
function Server:wait(seconds)
  local deadline = socket.gettime() + (seconds or 30)
  while self:alive() and socket.gettime() < deadline do socket.sleep(0.02) end
  return not self:alive()
end

function Server:stop()
  if self:alive() then
    self:signal("TERM")
    if not self:wait(30) then self:signal("KILL") end
  end
  self.cleanup()
end

function Server:write(path, content)
  os.execute("mkdir -p " .. proc.quote(self.root .. "/" .. path:match("^(.*)/")))
  -- write then rename, as editors do, so the watcher never sees half a file
  local tmp = self.root .. "/" .. path .. ".tmp"
  proc.write(tmp, content)
  assert(os.rename(tmp, self.root .. "/" .. path))
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
