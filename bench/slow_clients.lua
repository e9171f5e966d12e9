-- bench/slow_clients.lua -- `multiconnect web` under a slowloris attack: N
-- connections each send a request line, then one header line every INTERVAL
-- seconds and never finish; a closed one is reopened at once. Meanwhile a normal
-- client asks GET /health every half second. Prints how many /health answered
-- and how fast, and how long the server let a trickling connection live.
--   bin/multiconnect run bench/slow_clients.lua [connections=1500] [seconds=20] [interval=5] [binary]
-- The server is the binary given (default bin/multiconnect: another build to
-- compare with) with the defaults (WEB_HEADER_TIMEOUT 10 s, WEB_MAX_CONNECTIONS 1000, 2 threads).
local socket = require "socket"
local host = require "mc.host"

local N = tonumber(arg[1]) or 1500
local SECONDS = tonumber(arg[2]) or 20
local INTERVAL = tonumber(arg[3]) or 5
local BIN = arg[4] or (host.root .. "/bin/multiconnect")

local APP = [[
local app = require("mc.web").router()
app:get("/health", function() return 200, { ok = true } end)
return app
]]

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function start_server(port)
  local root = os.tmpname()
  os.remove(root)
  assert(os.execute("mkdir -p " .. root .. "/scripts"))
  local f = assert(io.open(root .. "/scripts/app.lua", "w"))
  f:write(APP)
  f:close()
  local p = assert(io.popen(string.format(
    "MC_ROOT=%s PORT=%d WEB_BIND=127.0.0.1 WEB_THREADS=2 MC_RELOAD=0 %s web >%s/log 2>&1 & echo $!",
    root, port, BIN, root)))
  local pid = p:read("l")
  p:close()
  for _ = 1, 100 do
    local c = socket.connect("127.0.0.1", port)
    if c then c:close() return pid, root end
    socket.sleep(0.05)
  end
  error("the server did not start; see " .. root .. "/log")
end

local function open(port, t)
  local c = socket.tcp()
  c:settimeout(1)
  if not c:connect("127.0.0.1", port) then c:close() return nil end
  c:send("GET /health HTTP/1.1\r\nHost: x\r\n")
  c:settimeout(0)
  return { sock = c, opened = t, next_send = t + INTERVAL }
end

local function health(port)
  local t = host.now()
  local c = socket.tcp()
  c:settimeout(10)
  if not c:connect("127.0.0.1", port) then c:close() return nil end
  c:send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  local line = c:receive("*l")
  c:close()
  if line and line:match("^HTTP/1%.1 200") then return host.now() - t end
  return nil
end

local port = free_port()
local pid, root = start_server(port)
local conns, lifetimes = {}, {}
local t0 = host.now()
for _ = 1, N do conns[#conns + 1] = open(port, host.now()) end
local latencies, failed, next_probe = {}, 0, host.now()
while host.now() - t0 < SECONDS do
  local now = host.now()
  for i, c in ipairs(conns) do
    local _, err = c.sock:receive(1)
    if err ~= "timeout" or (now >= c.next_send and not c.sock:send("X-Slow: 1\r\n")) then
      lifetimes[#lifetimes + 1] = now - c.opened
      c.sock:close()
      conns[i] = open(port, now) or { sock = socket.tcp(), opened = now, next_send = math.huge }
    elseif now >= c.next_send then
      c.next_send = now + INTERVAL
    end
  end
  if now >= next_probe then
    local s = health(port)
    if s then latencies[#latencies + 1] = s else failed = failed + 1 end
    next_probe = host.now() + 0.5
  end
  socket.sleep(0.05)
end
local oldest = 0
for _, c in ipairs(conns) do oldest = math.max(oldest, host.now() - c.opened); c.sock:close() end
os.execute("kill " .. pid)
socket.sleep(0.5)
os.execute("rm -rf " .. root)

table.sort(latencies)
table.sort(lifetimes)
local function pct(t, p) return #t > 0 and t[math.max(1, math.ceil(#t * p))] or 0 / 0 end
print(string.format("slow clients: %d connections, a header line every %g s, for %g s", N, INTERVAL, SECONDS))
print(string.format("  /health: %d answered, %d not; p50 %.3f s, max %.3f s", #latencies, failed,
  pct(latencies, 0.5), pct(latencies, 1)))
print(string.format("  trickling connections closed by the server: %d; lifetime p50 %.1f s, max %.1f s;"
  .. " the oldest still open: %.1f s", #lifetimes, pct(lifetimes, 0.5), pct(lifetimes, 1), oldest))
