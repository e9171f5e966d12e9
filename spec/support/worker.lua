-- support.worker: `multiconnect worker` in the background (support.daemon),
-- returned once its threads have started.
local daemon = require "support.daemon"

local _M = {}

-- start{files =, env =, root = dir?, may_end = false} -> daemon. may_end: a worker
-- that ends before it is seen (a job that kills it at once) is returned ended.
function _M.start(opts)
  local w = daemon.start({ command = "worker", files = opts.files, env = opts.env, root = opts.root,
    may_end = opts.may_end })
  if opts.may_end and not w.pid then return w end
  if w:wait_for(function() return w:log():find("msg=started", 1, true) or (opts.may_end and not w:alive()) end,
    30) then return w end
  local out = w:log()
  w:stop()
  error("worker did not start:\n" .. out)
end

return _M
