-- support.env_vars: configuration as this spec process's mc.env reads it. mc.env
-- calls os.getenv on every read, so answering chosen names from a table is the
-- environment a real process would have started with (setenv is not thread-safe).
--   local restore = env_vars.set{ HEROKU_API_URL = url, FORCE_NAMESPACE = false }
--   ...; restore()
-- false makes a name unset even when the harness has it.
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

return _M
