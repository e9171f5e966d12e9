-- mc.run: `multiconnect run FILE|MODULE [args...]`.
-- The chunk gets the arguments as `...` and in the global `arg` (arg[0] is the
-- target, as lua.c does). What it returns decides the exit status: an integer is
-- the status; nil/false with a message prints the message and exits 1 (the
-- nil, err convention); anything else is 0. An error propagates to the C side,
-- which prints it with its traceback and exits 1.
local host = require "mc.host"

local _M = {}

local function exists(path)
  local f = io.open(path, "r")
  if not f then return false end
  f:close()
  return true
end

-- resolve(target) -> chunk | nil, err. A path to a file wins; otherwise a module
-- name is looked up under $MC_ROOT/scripts.
function _M.resolve(target)
  if exists(target) then
    return loadfile(target, "t")
  end
  if not target:match("^[%w_][%w_.%-]*$") then
    return nil, "no such file: " .. target
  end
  local dir = host.root .. "/scripts/"
  local path, err = package.searchpath(target, dir .. "?.lua;" .. dir .. "?/init.lua")
  if not path then
    return nil, string.format("no file or module named %q;%s", target, err)
  end
  return loadfile(path, "t")
end

function _M.main(args)
  local target = args[1]
  if not target then
    io.stderr:write("usage: multiconnect run FILE|MODULE [args...]\n")
    return 2
  end
  local chunk, err = _M.resolve(target)
  if not chunk then
    io.stderr:write("multiconnect run: ", err, "\n")
    return 1
  end
  local script_args = { [0] = target, table.unpack(args, 2) }
  _G.arg = script_args
  local result = table.pack(chunk(table.unpack(script_args, 1, #args - 1)))
  local status = result[1]
  if math.type(status) == "integer" then return status end
  if result.n > 0 and not status then
    io.stderr:write("multiconnect run: ", tostring(result[2] or "failed"), "\n")
    return 1
  end
  return 0
end

return _M
