-- support.worker: `multiconnect worker` in the background (support.daemon),
-- returned once its threads have started.
local daemon = require "support.daemon"

local _M = {}

-- start{files =, env =, root = dir?} -> daemon
function _M.start(opts)
  local w = daemon.start({ command = "worker", files = opts.files, env = opts.env, root = opts.root })
  if w:wait_for(function() return w:log():find("msg=started", 1, true) end, 30) then return w end
  local out = w:log()
  w:stop()
  error("worker did not start:\n" .. out)
end

return _M
