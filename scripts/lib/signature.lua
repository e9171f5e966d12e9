-- lib.signature: the post-install callback's signature (docs/reliability.md §2).
-- The package signs `<X-Timestamp>.<raw body>` with HMAC-SHA256 under
-- CALLBACK_SECRET and sends the hex digest in X-Signature. We check, in order:
-- both headers present, the timestamp within CALLBACK_TOLERANCE (300 s) of our
-- clock, the digest (constant-time, against the current secret and, during a
-- rotation, CALLBACK_SECRET_PREVIOUS), and that this signature was not seen
-- before inside the window (Redis SET NX with the window as expiry).
-- CALLBACK_SIGNATURES=off switches all of this off, loudly: for a local demo only.
local db = require "lib.db"
local config = require "config"
local crypto = require "mc.crypto"
local host = require "mc.host"
local log = require "mc.log"

local _M = {}

-- sign(secret, timestamp, body) -> hex digest (what the Apex side computes)
function _M.sign(secret, timestamp, body)
  return crypto.to_hex(crypto.hmac_sha256(secret, tostring(timestamp) .. "." .. body))
end

local function matches(sig, timestamp, body)
  local ok = false
  for _, name in ipairs({ "CALLBACK_SECRET", "CALLBACK_SECRET_PREVIOUS" }) do
    local secret = config.get(name)
    if secret then ok = crypto.equal(_M.sign(secret, timestamp, body), sig) or ok end
  end
  return ok
end

-- verify(req) -> true | nil, reason (for a 401), status (503 when misconfigured)
function _M.verify(req)
  if config.get("CALLBACK_SIGNATURES") == "off" then
    log.warn("callback signature check is OFF (CALLBACK_SIGNATURES=off)", { path = req.path })
    return true
  end
  if not config.get("CALLBACK_SECRET") then
    log.error("CALLBACK_SECRET is not set: refusing signed callbacks")
    return nil, "the service is not configured to accept callbacks", 503
  end
  local ts, sig = req.headers["x-timestamp"], req.headers["x-signature"]
  if not ts or not sig then return nil, "missing X-Timestamp or X-Signature" end
  if not ts:match("^%d+$") or #ts > 12 then return nil, "X-Timestamp must be Unix seconds" end
  sig = sig:lower():gsub("^sha256=", "")
  if not sig:match("^%x+$") or #sig ~= 64 then return nil, "X-Signature must be 64 hex digits" end
  local tolerance = config.get("CALLBACK_TOLERANCE")
  if math.abs(host.time() - tonumber(ts)) > tolerance then
    return nil, "stale X-Timestamp (more than " .. tolerance .. " s from our clock)"
  end
  if not matches(sig, ts, req.body or "") then return nil, "bad signature" end
  local r, rerr = db.redis()
  if not r then return nil, "replay check unavailable: " .. rerr, 503 end
  local fresh, serr = r:call("SET", "mc:callback:sig:" .. sig, "1", "NX", "EX", 2 * tolerance)
  if fresh == nil and serr then return nil, "replay check unavailable: " .. serr, 503 end
  if fresh == mc.null then return nil, "replayed request (this signature was already used)" end
  rawset(req, "signature_key", "mc:callback:sig:" .. sig)
  return true
end

-- release(req): forget a verified request's signature, so that the package may
-- send the very same request again -- for when we answered it with a 5xx (or
-- refused its body) and stored nothing.
function _M.release(req)
  local key = rawget(req, "signature_key")
  if not key then return end
  local r = db.redis()
  if r then r:call("DEL", key) end
end

return _M
