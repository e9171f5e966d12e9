-- sandbox.ratelimit: fixed-window request counting in Redis, shared by the
-- services whose real APIs publish limit/remaining/reset headers.
local host = require "mc.host"
local store = require "sandbox.store"

local _M = {}

-- spend(service, who, limit, window) -> allowed, remaining, reset (unix seconds)
-- One call spends one request of who's window; a spent window answers false.
function _M.spend(service, who, limit, window)
  local now = host.time()
  local start = math.floor(now / window) * window
  local key = store.key(service, "ratelimit", who, start)
  local used = store.call("INCR", key)
  if used == 1 then store.call("EXPIRE", key, window + 1) end
  local reset = start + window
  if used > limit then return false, 0, reset end
  return true, limit - used, reset
end

return _M
