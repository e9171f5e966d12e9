-- fuzz target: the post-install callback as the web process takes it: the
-- signature check (lib.signature.verify) and then the body (JSON, then
-- onboarding.install.parse). Input: "<X-Timestamp>\n<X-Signature>\n<body>"; when
-- the first byte is odd the request is signed correctly, now, so that the body
-- reaches the parser. No Redis here: the replay check answers "unavailable".
package.loaded["lib.db"] = { redis = function() return nil, "no Redis in the fuzzer" end }
local SECRET = "fuzz-callback-secret-0123456789"
local real_getenv = os.getenv
os.getenv = function(name) -- luacheck: ignore (the configuration, in-process)
  if name == "CALLBACK_SECRET" then return SECRET end
  return real_getenv(name)
end
local signature = require "lib.signature"
local install = require "onboarding.install"
local json = require "mc.json"
local host = require "mc.host"

return function(data)
  local ts, sig, body = data:match("^([^\n]*)\n([^\n]*)\n(.*)$")
  if not ts then ts, sig, body = "", "", data end
  if (data:byte(1) or 0) % 2 == 1 then
    ts = tostring(math.floor(host.time()))
    sig = signature.sign(SECRET, ts, body)
  end
  local req = { path = "/organizations", method = "POST", body = body,
    headers = { ["x-timestamp"] = ts, ["x-signature"] = sig } }
  local ok, why = signature.verify(req)
  assert(ok or type(why) == "string", "a refusal without a reason")
  local doc = json.decode(body)
  if doc == nil then return end
  local f, errors = install.parse(doc)
  if not f then return assert(type(errors) == "table" and next(errors) ~= nil, "refused without errors") end
  assert(type(f.org_id) == "string" and utf8.len(f.org_id), "an org id that is not text")
  assert(json.encode(f), "parsed fields JSON cannot hold")
end
