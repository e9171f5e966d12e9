-- admin.session: the dashboard's signed, expiring session cookie, the CSRF
-- token tied to it, and the one-shot flash message of a redirect. Nothing is
-- stored server-side: the cookie is `v1.<expires>.<nonce>.<mac>`, HMAC-SHA256
-- under a key derived from ADMIN_TOKEN (lib.operator.key), so a forged or
-- edited cookie fails the MAC, an old one its expiry, and rotating ADMIN_TOKEN
-- signs every session out. The cookie carries nothing secret.
local config = require "config"
local crypto = require "mc.crypto"
local host = require "mc.host"
local operator = require "lib.operator"

local _M = {}

_M.COOKIE = "mc_admin"
_M.FLASH = "mc_admin_flash"
local PATH = "/admin"

local function b64(s) return crypto.to_base64url(s) end

local function mac(kind, text)
  return b64(crypto.hmac_sha256(assert(operator.key("dashboard " .. kind)), text))
end

-- cookies(req) -> { name = value } from the Cookie header
function _M.cookies(req)
  local out = {}
  for k, v in (req.headers["cookie"] or ""):gmatch("([^=;%s]+)=([^;]*)") do out[k] = v end
  return out
end

-- The attributes every cookie of ours gets; Secure when we are served over https.
local function attributes(max_age)
  local secure = config.app_url():match("^https:") and "; Secure" or ""
  return string.format("; Path=%s; Max-Age=%d; HttpOnly; SameSite=Strict%s", PATH, max_age, secure)
end

-- issue() -> the Set-Cookie value of a new session
function _M.issue()
  local expires = math.floor(host.time()) + config.get("ADMIN_SESSION_TTL")
  local body = "v1." .. expires .. "." .. b64(crypto.random(18))
  return _M.COOKIE .. "=" .. body .. "." .. mac("session", body) .. attributes(config.get("ADMIN_SESSION_TTL"))
end

-- clear() -> the Set-Cookie value that ends the session in the browser
function _M.clear() return _M.COOKIE .. "=" .. attributes(0) end

-- current(req) -> session {nonce, expires} | nil, why
function _M.current(req)
  local value = _M.cookies(req)[_M.COOKIE]
  if not value or value == "" then return nil, "no session" end
  local body, sig = value:match("^(v1%.%d+%.[%w_%-]+)%.([%w_%-]+)$")
  if not body or not crypto.equal(sig, mac("session", body)) then return nil, "bad session" end
  local expires, nonce = body:match("^v1%.(%d+)%.(.+)$")
  if tonumber(expires) <= host.time() then return nil, "expired" end
  return { nonce = nonce, expires = tonumber(expires) }
end

-- csrf(session) -> the token every form of this session posts back
function _M.csrf(session) return mac("csrf", session.nonce) end

-- csrf_ok(session, token) -> boolean, in constant time
function _M.csrf_ok(session, token)
  return type(token) == "string" and crypto.equal(token, _M.csrf(session))
end

-- flash(text) -> the Set-Cookie value carrying a message to the next page
function _M.flash(text)
  local body = b64(text:sub(1, 500))
  return _M.FLASH .. "=" .. body .. "." .. mac("flash", body) .. attributes(30)
end

-- take_flash(req) -> text | nil, and the Set-Cookie value that clears it
function _M.take_flash(req)
  local value = _M.cookies(req)[_M.FLASH]
  if not value or value == "" then return nil end
  local body, sig = value:match("^([%w_%-]+)%.([%w_%-]+)$")
  local clear = _M.FLASH .. "=" .. attributes(0)
  if not body or not crypto.equal(sig, mac("flash", body)) then return nil, clear end
  return crypto.from_base64url(body), clear
end

return _M
