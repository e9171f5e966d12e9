-- sandbox.faults: the knobs every service has, applied before its handler:
--   latency (seconds), fail_next (count of requests answered 5xx), fail_rate
--   (0..1), fail_status (default 503), timeout (seconds to stall before answering),
--   retry_after (seconds: the injected failures carry a Retry-After header).
local host = require "mc.host"
local log = require "mc.log"
local sched = require "mc.sched"
local store = require "sandbox.store"

local _M = {}

-- The service's error response, with the Retry-After the knobs ask for.
local function injected(failure, status, knobs)
  local code, body, headers = failure(status)
  if tonumber(knobs.retry_after) then
    headers = headers or {}
    headers["Retry-After"] = tostring(math.floor(knobs.retry_after))
  end
  return code, body, headers
end

-- wrap(service, handler, failure) -> handler applying the service's faults;
-- failure(status) builds that service's own error response.
function _M.wrap(service, handler, failure)
  return function(req)
    local _ <close> = store.pin() -- the knobs, read once for the whole request
    local knobs = store.config()[service] or {}
    local stall = (tonumber(knobs.latency) or 0) + (tonumber(knobs.timeout) or 0)
    if stall > 0 then
      -- said before the wait, so that a test can act while the request hangs
      log.info("sandbox stalls a request", { service = service, method = req.method, path = req.path, seconds = stall })
      -- a request that runs in a coroutine of the server's waits without holding its thread
      if not sched.sleep(stall) then host.sleep(stall) end
      store.repin() -- the knobs as they are after the wait: a test may have changed them
      knobs = store.config()[service] or {}
    end
    local status = tonumber(knobs.fail_status) or 503
    if tonumber(knobs.fail_next) and knobs.fail_next > 0 then
      store.merge({ [service] = { fail_next = knobs.fail_next - 1 } })
      return injected(failure, status, knobs)
    end
    if tonumber(knobs.fail_rate) and math.random() < knobs.fail_rate then return injected(failure, status, knobs) end
    return handler(req)
  end
end

return _M
