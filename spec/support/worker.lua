-- support.worker: run `multiconnect worker` (the real binary) in the background
-- with a scripts/ folder written by the spec, as support.server does for `web`:
-- a subshell records the exit status, signals go to the worker itself.
local socket = require "socket"
local proc = require "support.process"

local _M = {}

local Worker = {}
Worker.__index = Worker

-- start{files = {["scripts/jobs/x.lua"] = "..."}, env = {...}, root = dir?} -> worker
-- Returns once the worker has logged that its threads started.
function _M.start(opts)
  local root, cleanup = opts.root, function() end
  if not root then root, cleanup = proc.tmpdir() end
  for path, content in pairs(opts.files or {}) do
    os.execute("mkdir -p " .. proc.quote(root .. "/" .. path:match("^(.*)/")))
    proc.write(root .. "/" .. path, content)
  end
  local log = os.tmpname()
  local exit_path = log .. ".exit"
  local env = { "MC_ROOT=" .. proc.quote(root) }
  for k, v in pairs(opts.env or {}) do env[#env + 1] = k .. "=" .. proc.quote(v) end
  local cmd = string.format("(env %s %s worker >%s 2>&1; echo $? >%s) >/dev/null 2>&1 & echo $!",
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
  assert(pid, "worker process did not appear")
  local self = setmetatable({ root = root, pid = pid, log_path = log, exit_path = exit_path,
    cleanup = cleanup }, Worker)
  if self:wait_for(function() return self:log():find("msg=started", 1, true) end, 30) then
    return self
  end
  local out = self:log()
  self:stop()
  error("worker did not start:\n" .. out)
end

-- wait_for(fn, seconds) -> fn's first truthy result, or nil when time ran out
function Worker:wait_for(fn, seconds)
  local deadline = socket.gettime() + (seconds or 30)
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return nil
end

function Worker:alive()
  return os.execute("kill -0 " .. self.pid .. " 2>/dev/null") == true
end

function Worker:log()
  local f = io.open(self.log_path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function Worker:signal(name)
  os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null")
end

-- stop() -> exit status (TERM, then KILL after 30 s)
function Worker:stop()
  if self:alive() then
    self:signal("TERM")
    if not self:wait_for(function() return not self:alive() end, 30) then self:signal("KILL") end
  end
  local status = self:wait_for(function()
    local f = io.open(self.exit_path)
    if not f then return nil end
    local s = f:read("n")
    f:close()
    return s
  end, 5)
  os.remove(self.log_path)
  os.remove(self.exit_path)
  self.cleanup()
  return status
end

return _M
