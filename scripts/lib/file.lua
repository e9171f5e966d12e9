-- lib.file: reading a whole file, the one way scripts do it.
--   file.read(path) -> contents | nil, err, missing (true when there is no such file)
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

return _M
