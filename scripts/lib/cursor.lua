-- lib.cursor: opaque page cursors. A cursor carries where the previous page
-- ended and what it was a page of (sort and filters); it is signed, so a
-- client can neither forge a position nor carry one over to another listing,
-- and an edited cursor is refused instead of silently skipping rows.
--   local c = cursor.encode(key, { "2024-01-02 ...", "00D..." }, "sort=-updated_at&state=failed")
--   local pos, err = cursor.decode(key, c, "sort=-updated_at&state=failed")
local json = require "mc.json"
local crypto = require "mc.crypto"

local _M = {}

local MAC_BYTES = 16 -- of the HMAC-SHA256: forging one takes 2^128 tries

local function mac(key, body, scope)
  return crypto.hmac_sha256(key, "cursor\0" .. scope .. "\0" .. body):sub(1, MAC_BYTES)
end

-- encode(key, position, scope) -> string. position: a JSON array; scope: the
-- listing it belongs to, as a string.
function _M.encode(key, position, scope)
  local body = json.encode(position)
  return crypto.to_base64url(body) .. "." .. crypto.to_base64url(mac(key, body, scope))
end

-- decode(key, s, scope) -> position | nil, why
function _M.decode(key, s, scope)
  local b64, sig = tostring(s):match("^([%w_%-]+)%.([%w_%-]+)$")
  if not b64 then return nil, "is malformed" end
  local body, got = crypto.from_base64url(b64), crypto.from_base64url(sig)
  if not body or not got or not crypto.equal(got, mac(key, body, scope)) then
    return nil, "is not one this listing gave (or its filters or sort changed)"
  end
  local pos = json.decode(body)
  if type(pos) ~= "table" then return nil, "is malformed" end
  return pos
end

return _M
