-- mc: the namespace every script also sees as the global `mc` (as OpenResty's
-- `ngx`). Submodules load on first use: mc.json, mc.log, mc.env, ...
local host = require "mc.host"
local json = require "mc.json"

-- The application's modules come first, before Debian's Lua 5.4 locations.
local scripts = host.root .. "/scripts/"
package.path = scripts .. "?.lua;" .. scripts .. "?/init.lua;" .. package.path

local _M = {
  version = host.version,
  -- the one null (as OpenResty's ngx.null): JSON null, SQL NULL, Redis nil. The
  -- same value as json.null, pg.null and redis.null (core/host.h, mc_pushnull)
  null = json.null,
}

return setmetatable(_M, {
  __index = function(t, k)
    local name = "mc." .. tostring(k)
    if package.preload[name] == nil and package.loaded[name] == nil then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})
