-- lib.tokens: the sealed tokens our links carry (mc.crypto seal: AES-256-GCM
-- under ENCRYPTION_KEYS, each bound to its purpose), made by the onboarding
-- steps that mail the links and opened by the handlers the links reach.
local config = require "config"
local crypto = require "mc.crypto"

local _M = {}

-- The connect-auth-complete token: opaque, sealed (so neither guessable nor
-- forgeable), and bound to the org and its connection.
function _M.connect(org, connection_id)
  return crypto.seal(org.org_id .. ":" .. connection_id, "connection_auth_complete")
end

-- The first mail's sign-in link carries a sealed token naming the org and an
-- expiry (AUTHENTICATE_LINK_TTL, default 7 days): an org id alone is not a
-- secret, and whoever starts a sign-in can stop an onboarding by signing in to
-- the wrong org.
function _M.authenticate(org)
  local ttl = config.get("AUTHENTICATE_LINK_TTL")
  return crypto.seal(org.org_id .. ":" .. (os.time() + ttl), "authenticate")
end

-- open_authenticate(token) -> org_id | nil, why
function _M.open_authenticate(token)
  local plain = type(token) == "string" and crypto.open(token, "authenticate")
  local id, expires = (plain or ""):match("^(00D%w+):(%d+)$")
  if not id then return nil, "invalid" end
  if tonumber(expires) < os.time() then return nil, "expired" end
  return id
end

function _M.open_connect(token)
  local plain = crypto.open(token, "connection_auth_complete")
  if not plain then return nil end
  return plain:match("^(00D%w+):(.+)$")
end

return _M
