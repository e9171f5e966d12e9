-- mc.crypto: sealing secrets at rest, and the small primitives around it.
--
--   local token = crypto.seal(refresh_token, "org:00D...:refresh_token")
--   local plain, err = crypto.open(token, "org:00D...:refresh_token")
--
-- Tokens are "v1.<kid>.<base64url(nonce | ciphertext | tag)>": AES-256-GCM with a
-- random 96-bit nonce; the version, key id and caller's context are authenticated
-- data, so a token copied to another row (another context) or re-labelled with
-- another key id fails to open. Keys come from ENCRYPTION_KEYS="kid:base64key,...":
-- the first seals, every one opens, so keys rotate by putting a new one first.
local native = require "mc.crypto_native"

local _M = {
  hmac_sha256 = native.hmac_sha256,
  sha256 = native.sha256,
  sha1 = native.sha1,
  random = native.random,
  equal = native.equal,
  to_hex = native.to_hex,
  from_hex = native.from_hex,
  aead_seal = native.aead_seal,
  aead_open = native.aead_open,
}

local VERSION = "v1"
local INVALID = "invalid token"

function _M.to_base64(s) return native.to_base64(s, false) end
function _M.from_base64(s) return native.from_base64(s, false) end
function _M.to_base64url(s) return native.to_base64(s, true) end
function _M.from_base64url(s) return native.from_base64(s, true) end

local Keyring = {}
Keyring.__index = Keyring
Keyring.__tostring = function(k) return "mc.crypto.keyring (" .. #k.order .. " keys)" end
Keyring.__name = "mc.crypto.keyring"

-- keyring(spec) -> keyring | nil, err. spec: "kid:base64key,kid2:base64key2";
-- the first key seals. Key ids are 1-32 of [A-Za-z0-9_-]; keys 32 bytes.
function _M.keyring(spec)
  if type(spec) ~= "string" then error("keyring: spec must be a string", 2) end
  local ring = setmetatable({ keys = {}, order = {} }, Keyring)
  for item in spec:gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    local kid, b64 = item:match("^([%w_%-]+):(%S+)$")
    if not kid or #kid > 32 then return nil, "malformed entry (want kid:base64key)" end
    local key = native.from_base64(b64, false) or native.from_base64(b64, true)
    if not key or #key ~= native.KEY_LEN then
      return nil, string.format("key %q must be %d bytes, base64-encoded", kid, native.KEY_LEN)
    end
    if ring.keys[kid] then return nil, string.format("key id %q appears twice", kid) end
    ring.keys[kid] = key
    ring.order[#ring.order + 1] = kid
  end
  if #ring.order == 0 then return nil, "no keys" end
  return ring
end

local function aad(kid, context)
  return VERSION .. "." .. kid .. "." .. (context or "")
end

-- ring:seal(plaintext, context?) -> token
function Keyring:seal(plaintext, context)
  if type(plaintext) ~= "string" then error("seal: plaintext must be a string", 2) end
  if context ~= nil and type(context) ~= "string" then error("seal: context must be a string", 2) end
  local kid = self.order[1]
  local nonce = assert(native.random(native.NONCE_LEN))
  local sealed = native.aead_seal(self.keys[kid], nonce, plaintext, aad(kid, context))
  return VERSION .. "." .. kid .. "." .. native.to_base64(nonce .. sealed, true)
end

-- ring:open(token, context?) -> plaintext | nil, "invalid token" | nil, "unknown key id"
function Keyring:open(token, context)
  if type(token) ~= "string" then return nil, INVALID end
  local version, kid, body = token:match("^(v%d+)%.([%w_%-]+)%.([%w_%-]+)$")
  if version ~= VERSION then return nil, INVALID end
  local key = self.keys[kid]
  if not key then return nil, "unknown key id" end
  local raw = native.from_base64(body, true)
  if not raw or #raw < native.NONCE_LEN + 16 then return nil, INVALID end
  return native.aead_open(key, raw:sub(1, native.NONCE_LEN), raw:sub(native.NONCE_LEN + 1),
    aad(kid, context))
end

-- The process keyring from ENCRYPTION_KEYS, read on first use.
local default_ring
local function default_keyring()
  if default_ring then return default_ring end
  local spec = os.getenv("ENCRYPTION_KEYS")
  if not spec or spec == "" then
    error("ENCRYPTION_KEYS is required but not set (kid:base64 32-byte key,...)", 3)
  end
  local ring, err = _M.keyring(spec)
  if not ring then error("ENCRYPTION_KEYS: " .. err, 3) end
  default_ring = ring
  return ring
end

function _M.seal(plaintext, context) return default_keyring():seal(plaintext, context) end
function _M.open(token, context) return default_keyring():open(token, context) end

-- A new key for ENCRYPTION_KEYS: crypto.new_key() -> base64 of 32 random bytes.
function _M.new_key() return native.to_base64(assert(native.random(native.KEY_LEN)), false) end

return _M
