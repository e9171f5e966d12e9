-- bench/onboarding_cpu.lua: where a bench run's core-seconds go, process by
-- process, from /proc/<pid>/stat (utime + stime; cutime + cstime too where the
-- children a process reaped belong to it: a Postgres backend that ended is in its
-- postmaster's). Postgres backends are charged to the process at the other end of
-- their connection (pg_stat_activity's client_port, matched by `ss`), so "the
-- Postgres work we cause" is seen apart from the stand-ins' and the bench's.
--   local m = meter.new{ web = pid, worker = pid, sandbox = pid, redis = pid,
--                        postmaster = pid, pg_port = port, pg = conn,
--                        admin = function() return pid end } -- the simulated admin's
--   local t0 = m:sample() ... local t1 = m:sample(); local used = meter.diff(t0, t1)
--   used.web, used["pg:worker"], used.machine, ... (core-seconds)
local _M = {}

local HZ = 100

local read = require("mc.file").read

local function lines(cmd)
  local p = io.popen(cmd)
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  return out
end

do
  local tck = tonumber(lines("getconf CLK_TCK 2>/dev/null")[1] or "")
  if tck and tck > 0 then HZ = tck end
end

-- times(pid) -> own seconds, reaped children's seconds (nil when it is gone)
function _M.times(pid)
  local s = read("/proc/" .. pid .. "/stat")
  if not s then return nil end
  -- fields after the command's name (which may hold spaces): state is field 3
  local f = {}
  for v in s:match("%) (.*)$"):gmatch("%S+") do f[#f + 1] = v end
  return (f[12] + f[13]) / HZ, (f[14] + f[15]) / HZ
end

function _M.children(pid)
  return lines("pgrep -P " .. pid)
end

-- machine() -> busy core-seconds of the whole machine since boot (every process,
-- ours or not, and the kernel's interrupts)
function _M.machine()
  local v = {}
  for n in read("/proc/stat"):match("^cpu%s+([^\n]*)"):gmatch("%d+") do v[#v + 1] = tonumber(n) end
  local busy = 0
  for i, n in ipairs(v) do
    if i ~= 4 and i ~= 5 and i <= 8 then busy = busy + n end -- not idle, iowait, guest
  end
  return busy / HZ
end

local Meter = {}
Meter.__index = Meter

-- new{web, worker, sandbox, redis, postmaster, pg_port, pg, admin} -> meter
function _M.new(opts)
  return setmetatable({ o = opts, self_pid = read("/proc/self/stat"):match("^(%d+)") }, Meter)
end

-- owners() -> {[client port] = name}: which watched process holds each
-- connection to Postgres
function Meter:owners()
  local name_of = { [self.self_pid] = "bench" }
  for _, k in ipairs({ "web", "worker", "sandbox" }) do
    if self.o[k] then name_of[tostring(self.o[k])] = k end
  end
  for _, pid in ipairs(_M.children(self.o.sandbox)) do name_of[pid] = "admin" end
  local by_port = {}
  for _, l in ipairs(lines("ss -tnpH state established '( dport = :" .. self.o.pg_port .. " )' 2>/dev/null")) do
    local port, pid = l:match(":(%d+)%s+%S+:%d+%s+users:%(%(\"[^\"]*\",pid=(%d+)")
    if port and name_of[pid] then by_port[port] = name_of[pid] end
  end
  return by_port
end

-- sample() -> {[name] = core-seconds so far, procs = {[pid] = {name, seconds}}}:
-- procs are those that may come and go between two samples
function Meter:sample()
  local o, t = self.o, { procs = {} }
  for _, k in ipairs({ "web", "worker", "redis" }) do
    local own, reaped = _M.times(o[k])
    t[k] = (own or 0) + (reaped or 0)
  end
  -- the sandbox's children start the simulated admin, which runs on its own
  local own, reaped = _M.times(o.sandbox)
  t.sandbox, t.admin = own or 0, reaped or 0
  local admin = o.admin and o.admin()
  if admin then
    local a, b = _M.times(admin)
    if a then t.procs[admin] = { "admin", a + b } end
  end
  t.bench = _M.times(self.self_pid)
  -- Postgres: the postmaster, every live child (charged to its client, else
  -- "pg:other": checkpointer, WAL writer, autovacuum), and children that ended
  local pg_own, pg_reaped = _M.times(o.postmaster)
  t["pg:ended"] = pg_reaped or 0
  t["pg:other"] = pg_own or 0
  local by_port = self:owners()
  local client = {}
  for _, r in ipairs(assert(o.pg:query("SELECT pid, client_port FROM pg_stat_activity WHERE client_port > 0"))) do
    client[tostring(r.pid)] = by_port[tostring(r.client_port)]
  end
  for _, pid in ipairs(_M.children(o.postmaster)) do
    local s = _M.times(pid)
    if s then t.procs[pid] = { "pg:" .. (client[pid] or "other"), s } end
  end
  t.machine = _M.machine()
  return t
end

-- diff(t0, t1) -> {[name] = core-seconds used between the two samples}. A backend
-- that ended in between is in "pg:ended" whole (what it had used at t0 is taken
-- back from there).
function _M.diff(t0, t1)
  local d = {}
  for k, v in pairs(t1) do
    if type(v) == "number" then d[k] = v - (t0[k] or 0) end
  end
  for pid, p in pairs(t1.procs) do
    local before = t0.procs[pid] and t0.procs[pid][2] or 0
    d[p[1]] = (d[p[1]] or 0) + p[2] - before
  end
  for pid, p in pairs(t0.procs) do
    if not t1.procs[pid] and p[1]:find("^pg:") then d["pg:ended"] = d["pg:ended"] - p[2] end
  end
  return d
end

-- The groups the bench prints: what we run, what stands in for the outside
-- world, and what both use.
_M.GROUPS = {
  { "ours", { "web", "worker", "pg:web", "pg:worker" } },
  { "stand-ins", { "sandbox", "admin", "pg:sandbox", "pg:admin" } },
  { "shared", { "redis", "pg:other", "pg:ended" } },
  { "bench", { "bench", "pg:bench" } },
}

return _M
