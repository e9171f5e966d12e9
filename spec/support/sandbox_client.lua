-- support.sandbox_client: the project's sandbox (support.sandbox) for one spec file
-- that calls a client module in-process, steered through /__sandbox.
--   local sb = sandbox_client.start(20)    -- sb.url: "http://127.0.0.1:<port>"
--   sb:reset{ heroku = { async = false } } -- forget every state and knob, then set these
--   sb:knobs{ heroku = { fail_next = 1 } } -- merge knobs
--   sb:get("/__sandbox/heroku/addons")     -- a decoded GET of the sandbox
--   sb:stop()
local http = require "mc.http"
local sandbox = require "support.sandbox"

local _M = {}

local Client = {}
Client.__index = Client

function _M.start(db, env)
  local d, url = sandbox.start(db, env)
  return setmetatable({ daemon = d, url = url }, Client)
end

function Client:knobs(doc)
  local res = assert(http.post(self.url .. "/__sandbox/config", { json = doc }))
  assert(res.status == 200, "sandbox config: " .. res.status .. " " .. res.body)
end

function Client:reset(knobs)
  local res = assert(http.post(self.url .. "/__sandbox/reset", {}))
  assert(res.status == 204, "sandbox reset: " .. res.status .. " " .. res.body)
  if knobs then self:knobs(knobs) end
end

-- get(path, headers) -> the decoded body, res
function Client:get(path, headers)
  local res = assert(http.get(self.url .. path, { headers = headers }))
  return res:json(), res
end

function Client:stop()
  self.daemon:stop()
end

return _M
