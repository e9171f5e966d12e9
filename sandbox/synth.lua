-- sandbox.synth: deterministic fake posts for the social stand-ins. A feed is a
-- series of instants every `interval` seconds, shifted by a per-feed offset, so
-- the same seed gives the same posts and newer posts appear as time passes.
local host = require "mc.host"
local store = require "sandbox.store"

local _M = {}

-- FNV-1a, 32 bits: a stable hash of a string
function _M.hash(s)
  local h = 2166136261
  for i = 1, #s do
    h = ((h ~ s:byte(i)) * 16777619) & 0xffffffff
  end
  return h
end

-- pick(list, ...) -> an element chosen by hashing the other arguments
function _M.pick(list, ...)
  return list[_M.hash(table.concat({ ... }, "|")) % #list + 1]
end

-- now(service): wall clock plus the service's clock_offset knob (seconds), so a
-- test can move time forward instead of waiting for it.
function _M.now(service)
  return host.time() + (tonumber(store.knob(service, "clock_offset", 0)) or 0)
end

-- instants(feed, interval, from, to) -> {unix seconds (integers), newest first}
function _M.instants(feed, interval, from, to)
  interval = math.max(1, math.floor(interval))
  local offset = _M.hash(feed) % interval
  local out = {}
  local k = math.floor((to - offset) / interval)
  while true do
    local t = k * interval + offset
    if t < from then break end
    if t <= to then out[#out + 1] = t end
    k = k - 1
  end
  return out
end

return _M
