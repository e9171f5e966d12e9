-- sandbox.faults: the knobs every service has, applied before its handler:
--   latency (seconds), fail_next (count of requests answered 5xx), fail_rate
--   (0..1), fail_status (default 503), timeout (seconds to stall before answering).
local host = require "mc.host"
local log = require "mc.log"
local store = require "sandbox.store"

local _M = {}

-- wrap(service, handler, failure) -> handler applying the service's faults;
-- failure(status) builds that service's own error response.
function _M.wrap(service, handler, failure)
  return function(req)
    local knobs = store.config()[service] or {}
    local stall = (tonumber(knobs.latency) or 0) + (tonumber(knobs.timeout) or 0)
    if stall > 0 then
      -- said before the wait, so that a test can act while the request hangs
      log.info("sandbox stalls a request", { service = service, method = req.method, path = req.path, seconds = stall })
      host.sleep(stall)
    end
    local status = tonumber(knobs.fail_status) or 503
    if tonumber(knobs.fail_next) and knobs.fail_next > 0 then
      store.merge({ [service] = { fail_next = knobs.fail_next - 1 } })
      return failure(status)
    end
    if tonumber(knobs.fail_rate) and math.random() < knobs.fail_rate then return failure(status) end
    return handler(req)
  end
end

return _M
