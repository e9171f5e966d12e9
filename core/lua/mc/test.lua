-- mc.test: `multiconnect test [busted options] [paths]` runs Debian's busted
-- inside the host, so specs can use every mc.* primitive. Output goes through
-- mc.test_output, which ends with the line "N passed, N failed[, N skipped]".
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

-- Whether the arguments name a spec file or folder (else the default spec/ runs).
local function has_path(args)
  for _, a in ipairs(args) do
    if not a:match("^%-") and file.exists(a) then return true end
  end
  return false
end

-- A path that is not there is a typo, not a request for the whole suite.
local function missing_path(args)
  for i, a in ipairs(args) do
    local value_of_option = i > 1 and args[i - 1]:match("^%-%w$")
    if not a:match("^%-") and not value_of_option and (a:find("%.lua$") or a:find("/")) and not file.exists(a) then
      return a
    end
  end
end

function _M.main(args)
  local missing = missing_path(args)
  if missing then
    io.stderr:write("multiconnect test: no such spec file or folder: ", missing, "\n")
    return 2
  end
  local argv = { [0] = "multiconnect test" }
  for i, a in ipairs(args) do argv[i] = a end
  if not has_path(args) then argv[#argv + 1] = host.root .. "/spec" end
  _G.arg = argv
  package.path = host.root .. "/spec/?.lua;" .. package.path
  -- On failure busted ends the process itself (os.exit(1, true), which closes
  -- the state); on success it returns here.
  require("busted.runner")({ standalone = false, output = "mc.test_output" })
  return 0
end

return _M
