-- lib.operator: operator credentials for the read/steer endpoints
-- (GET /organizations/:id, resume): `Authorization: Bearer <ADMIN_TOKEN>`,
-- compared in constant time. No ADMIN_TOKEN configured: nobody gets in.
local config = require "config"
local crypto = require "mc.crypto"

local _M = {}

-- check(req) -> true | nil, status, body
function _M.check(req)
  local want = config.get("ADMIN_TOKEN")
  local got = (req.headers["authorization"] or ""):match("^[Bb]earer%s+(%S+)$")
  -- config refuses an ADMIN_TOKEN shorter than 16 characters at start
  if want and got and crypto.equal(crypto.sha256(got), crypto.sha256(want)) then return true end
  if not want then
    return nil, 401, { error = "operator access is disabled: ADMIN_TOKEN is not set" }
  end
  return nil, 401, { error = "operator credentials required (Authorization: Bearer <ADMIN_TOKEN>)" },
    { ["WWW-Authenticate"] = 'Bearer realm="multiconnect"' }
end

-- key(purpose) -> a key derived from ADMIN_TOKEN for one purpose ("session",
-- "cursor", ...) | nil when no ADMIN_TOKEN is set. Derived, so that a cookie or a
-- cursor never carries anything from which the token itself could be learned,
-- and so that rotating the token voids every session and cursor made with it.
function _M.key(purpose)
  local secret = config.get("ADMIN_TOKEN")
  if not secret then return nil end
  return crypto.hmac_sha256(secret, "multiconnect operator key: " .. purpose)
end

return _M
