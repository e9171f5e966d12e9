-- fuzz target: the Postgres value decoders (mc.pg.decoders, by OID, and
-- core/pg.c's array literal parser under the array OIDs). The first byte picks
-- the OID; the rest is the text Postgres would send. A decoder gives a value
-- or keeps the text; it never raises.
local pg = require "mc.pg"
local native = require "mc.pg_native"

local OIDS = {}
for oid in pairs(pg.decoders) do OIDS[#OIDS + 1] = oid end
table.sort(OIDS)

return function(data)
  local oid = OIDS[(data:byte(1) or 0) % #OIDS + 1]
  local text = data:sub(2)
  local v = pg.decoders[oid](text)
  assert(v ~= nil, "decoder of OID " .. oid .. " gave nil")
  local arr = native.parse_array(text)
  assert(arr == nil or type(arr) == "table")
  native.parse_array(text, function(s) return #s end)
end
