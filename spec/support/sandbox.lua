-- support.sandbox: `multiconnect sandbox` (the project's own sandbox/) on a free
-- port, with its state in database `db` of the test Redis, once it listens.
--   local sb, url = sandbox.start(11)   -- url: "http://127.0.0.1:<port>"
local daemon = require "support.daemon"
local server = require "support.server"
local host = require "mc.host"

local _M = {}

-- start(db, env?) -> daemon, base url
function _M.start(db, env)
  local port = server.free_port()
  local e = { SANDBOX_PORT = tostring(port), WEB_BIND = "127.0.0.1", WEB_THREADS = "2",
              SANDBOX_REDIS_URL = assert(os.getenv("REDIS_URL")):gsub("/%d*$", "") .. "/" .. db }
  for k, v in pairs(env or {}) do e[k] = v end
  local sb = daemon.start({ command = "sandbox", root = host.root, env = e })
  if not sb:wait_log("msg=listening", 10) then
    local log = sb:log()
    sb:stop()
    error("sandbox did not start:\n" .. log)
  end
  return sb, "http://127.0.0.1:" .. port
end

return _M
