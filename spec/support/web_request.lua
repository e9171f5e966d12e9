-- support.web_request: a request table as mc.web hands it to a handler (method,
-- path, params, query, headers with lower-cased names, body, json(), form(), ip,
-- id), for specs that call a handler in-process. mc.web fills headers, query and ip
-- from the C server's context; here the spec names them.
--   local req = web_request.new{ method = "POST", path = "/organizations", body = "{}",
--     headers = { ["X-Signature"] = sig }, params = { org_id = ORG }, query = { t = tok } }
--   web_request.signed(secret, body, { method = "DELETE", ... }) -- X-Timestamp, X-Signature
local json = require "mc.json"
local host = require "mc.host"
local signature = require "lib.signature"

local _M = {}

local serial = 0

-- new(fields) -> req
function _M.new(f)
  serial = serial + 1
  local headers = {}
  for k, v in pairs(f.headers or {}) do headers[k:lower()] = v end
  local req = { method = f.method or "GET", path = f.path or "/", params = f.params or {}, query = f.query or {},
    headers = headers, body = f.body, ip = f.ip or "203.0.113.9", id = f.id or ("spec-" .. serial) }
  -- as mc.web's: nil, "empty body" for none, else mc.json's answer
  req.json = function()
    if req.body == nil or req.body == "" then return nil, "empty body" end
    return json.decode(req.body)
  end
  return req
end

-- signed(secret, body, fields) -> req carrying the package's signature of body
-- (fields.timestamp: the signed time, default now)
function _M.signed(secret, body, f)
  f = f or {}
  local ts = tostring(f.timestamp or math.floor(host.time()))
  local headers = { ["X-Timestamp"] = ts, ["X-Signature"] = signature.sign(secret, ts, body) }
  for k, v in pairs(f.headers or {}) do headers[k] = v end
  local fields = { body = body, headers = headers }
  for k, v in pairs(f) do if fields[k] == nil and k ~= "timestamp" then fields[k] = v end end
  return _M.new(fields)
end

return _M
