-- support.env_vars: configuration as this spec process's mc.env reads it. mc.env
-- calls os.getenv on every read, so answering chosen names from a table is the
-- environment a real process would have started with (setenv is not thread-safe).
--   local restore = env_vars.set{ HEROKU_API_URL = url, FORCE_NAMESPACE = false }
--   ...; restore()
-- false makes a name unset even when the harness has it.
--   local config = env_vars.layered(function() return { HEROKU_API_URL = sb.url } end)
--   config:set{ HEROKU_APP_NAME = false }  -- the defaults with these on top, in place
--   config:restore()                       -- of the previous set
local _M = {}

function _M.set(vars)
  local real = os.getenv
  os.getenv = function(name) -- luacheck: ignore
    local v = vars[name]
    if v == false then return nil end
    if v ~= nil then return v end
    return real(name)
  end
  return function() os.getenv = real end -- luacheck: ignore
end

local Layered = {}
Layered.__index = Layered

-- layered(defaults): defaults is a table, or a function giving one (for values
-- known only once a spec's setup ran)
function _M.layered(defaults)
  return setmetatable({ defaults = defaults }, Layered)
end

function Layered:set(overrides)
  self:restore()
  local env = {}
  local base = type(self.defaults) == "function" and self.defaults() or self.defaults
  for k, v in pairs(base) do env[k] = v end
  for k, v in pairs(overrides or {}) do env[k] = v end
  self.undo = _M.set(env)
end

function Layered:restore()
  if self.undo then self.undo() end
  self.undo = nil
end

return _M
