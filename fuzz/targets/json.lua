-- fuzz target: mc.json.decode (core/json.c over lua-cjson). What it accepts
-- encodes again (or is refused with a message), and that text decodes to the
-- same value: the same keys and strings, and numbers equal to cjson's 14
-- significant digits (documented: pass longer numbers as strings). What decode
-- refuses, it refuses with a message.
local json = require "mc.json"

local function same(a, b)
  if type(a) == "number" and type(b) == "number" then
    return a == b or string.format("%.14g", a) == string.format("%.14g", b)
  end
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

return function(data)
  local v, err = json.decode(data)
  if v == nil then
    assert(type(err) == "string", "a refusal without a message")
    return
  end
  local text, eerr = json.encode(v)
  if not text then return assert(type(eerr) == "string") end
  local again, aerr = json.decode(text)
  assert(again ~= nil, "encode wrote what decode refuses: " .. text .. ": " .. tostring(aerr))
  assert(same(v, again), "not the same after a round: " .. text)
end
