-- support.daemon: run a long-lived multiconnect process (web, worker, clock) in
-- the background with a scripts/ folder written by the spec, and steer it with
-- signals: the real binary, as a Procfile would run it.
local proc = require "support.process"

local _M = {}

local Daemon = {}
Daemon.__index = Daemon
_M.Daemon = Daemon

-- start{command = "worker", files = {["scripts/x.lua"] = "..."}, env = {...},
--   root = dir?, may_end = false} -> daemon, not waited for: the caller knows
-- what "ready" means. A process that ends before it is seen running is an error,
-- unless may_end says the spec expects it to (a refused start): then the daemon
-- is returned already ended, its log and exit status readable.
-- Without root, a scratch MC_ROOT is made and removed by stop().
function _M.start(opts)
  local root, cleanup = opts.root, function() end
  if root then
    proc.write_files(root, opts.files)
  else
    root, cleanup = proc.project(opts.files)
  end
  local log = os.tmpname()
  local env = { "MC_ROOT=" .. proc.quote(root) }
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. proc.quote(v) end
  local exit_path = log .. ".exit"
  -- a subshell records the exit status; signals go to the process itself
  local cmd = string.format("(env %s %s %s >%s 2>&1; echo $? >%s) >/dev/null 2>&1 & echo $!",
    table.concat(env, " "), proc.quote(proc.exe), opts.command, proc.quote(log), proc.quote(exit_path))
  local p = io.popen(cmd)
  local shell = p:read("l")
  p:close()
  -- the process, or its exit status when it ended at once (a refused start)
  local ended = function()
    local f = io.open(exit_path)
    if f then f:close() end
    return f ~= nil
  end
  local pid = proc.wait_for(function()
    local q = io.popen("pgrep -P " .. shell)
    local child = q:read("l")
    q:close()
    return child or (ended() and "ended")
  end, 10, "the " .. opts.command .. " process to appear") -- generous: suites may share the machine
  if pid == "ended" and opts.may_end then
    pid = nil
  elseif pid == "ended" then
    local f = io.open(log)
    local out = f and f:read("a") or ""
    if f then f:close() end
    cleanup()
    error(opts.command .. " exited at once:\n" .. out, 2)
  end
  return setmetatable({ root = root, pid = pid, log_path = log, exit_path = exit_path,
    cleanup = cleanup }, opts.class or Daemon)
end

-- wait_for(fn, seconds, what): proc.wait_for
function Daemon:wait_for(fn, seconds, what)
  return proc.wait_for(fn, seconds, what)
end

-- Waits (bounded; not past the process's end) until the log contains text
-- (plain); true if it did.
function Daemon:wait_log(text, seconds)
  proc.wait_for(function() return self:log():find(text, 1, true) or not self:alive() end, seconds or 10)
  return self:log():find(text, 1, true) ~= nil
end

function Daemon:alive()
  if not self.pid then return false end -- ended before it was seen (may_end)
  return os.execute("kill -0 " .. self.pid .. " 2>/dev/null") == true
end

function Daemon:log()
  local f = io.open(self.log_path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- The exit status once the process has ended, else nil.
function Daemon:exit_status()
  return proc.wait_for(function()
    local f = io.open(self.exit_path)
    if not f then return nil end
    local s = f:read("n")
    f:close()
    return s
  end, 2)
end

function Daemon:signal(name)
  if not self.pid then return end
  os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null")
end

-- wait(seconds) -> true once the process has ended (bounded wait)
function Daemon:wait(seconds)
  return proc.wait_for(function() return not self:alive() end, seconds or 30) == true
end

-- stop() -> exit status (TERM, then KILL after 30 s); removes what start made
function Daemon:stop()
  if self:alive() then
    self:signal("TERM")
    if not self:wait(30) then self:signal("KILL") end
  end
  local status = self:exit_status()
  os.remove(self.log_path)
  os.remove(self.exit_path)
  self.cleanup()
  return status
end

function Daemon:write(path, content)
  os.execute("mkdir -p " .. proc.quote(self.root .. "/" .. path:match("^(.*)/")))
  -- write then rename, as editors do, so the watcher never sees half a file
  local tmp = self.root .. "/" .. path .. ".tmp"
  proc.write(tmp, content)
  assert(os.rename(tmp, self.root .. "/" .. path))
end

return _M
