-- mc.file: whole files, read the one way the host's Lua does it.
--   file.read(path) -> contents | nil, err, missing (true when there is no such file)
--   file.exists(path) -> boolean (a file or folder that can be opened for reading)
local _M = {}

local ENOENT = 2

function _M.read(path)
  local f, err, code = io.open(path, "rb")
  if not f then return nil, err, code == ENOENT end
  local data, rerr = f:read("a")
  f:close()
  if not data then return nil, path .. ": " .. tostring(rerr), false end
  return data
end

function _M.exists(path)
  local f = io.open(path, "rb")
  if not f then return false end
  f:close()
  return true
end

return _M
