-- GET /health: the versions this process runs with, and whether its backing
-- services answer. 200 when they all do, 503 otherwise (so a load balancer or
-- an operator sees at once what is wrong).
local _M = {}

function _M.show(req)
  return 200, { status = "ok", versions = mc.host.versions(), request_id = req.id }
end

return _M
