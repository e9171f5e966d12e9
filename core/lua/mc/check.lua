-- mc.check: `multiconnect check`: what can be known wrong in the application's
-- scripts without starting anything or reaching a service, for CI and for the
-- release phase. It checks, in order:
--   1. every .lua file under scripts/ compiles (a syntax error names file:line);
--   2. scripts/app.lua loads and returns a router;
--   3. scripts/schedule.lua validates as the clock would (entries, cron, jobs);
--   4. the application's own checks: a module `check` (scripts/check.lua) whose
--      run() returns its problems (tenant hooks, mappings, ...).
-- A problem is {file =, line =, message =, fix =}; each prints as one line,
-- `file:line: message (fix: ...)`. Exit 0 when there are none, 1 otherwise.
local host = require "mc.host"
local lfs = require "lfs"

local _M = {}

-- lua_files(dir) -> sorted paths under dir (relative to MC_ROOT)
local function lua_files(rel, out)
  local abs = host.root .. "/" .. rel
  if lfs.attributes(abs, "mode") ~= "directory" then return out end
  local names = {}
  for name in lfs.dir(abs) do
    if name ~= "." and name ~= ".." then names[#names + 1] = name end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    local path = rel .. "/" .. name
    local mode = lfs.attributes(host.root .. "/" .. path, "mode")
    if mode == "directory" then
      lua_files(path, out)
    elseif name:find("%.lua$") then
      out[#out + 1] = path
    end
  end
  return out
end

-- "scripts/x.lua:3: unexpected symbol" -> "scripts/x.lua", 3, "unexpected symbol"
function _M.split(err)
  local file, line, msg = tostring(err):match("^([^:\n]+%.%a+):(%d+): (.*)$")
  if file then return file, math.tointeger(tonumber(line)), msg end
  return nil, nil, tostring(err)
end

-- split() of an error whose file is named under MC_ROOT: the path made relative
local function split_rel(err)
  return _M.split((tostring(err):gsub("^" .. host.root:gsub("%p", "%%%0") .. "/", "")))
end

local function syntax(problems)
  local files = lua_files("scripts", {})
  for _, path in ipairs(files) do
    local chunk, err = loadfile(host.root .. "/" .. path, "t")
    if not chunk then
      local _, line, msg = split_rel(err)
      problems[#problems + 1] = { file = path, line = line, message = msg, fix = "correct the syntax" }
    end
  end
  return #files
end

-- Runs fn(); an error becomes a problem naming file (or the error's own file:line).
local function guarded(problems, file, fix, fn)
  local ok, err = pcall(fn)
  if ok then return end
  local efile, line, msg = split_rel(err)
  problems[#problems + 1] = { file = efile or file, line = line, message = msg, fix = fix }
end

local function app(problems)
  if not lfs.attributes(host.root .. "/scripts/app.lua") then return end
  guarded(problems, "scripts/app.lua", "scripts/app.lua must return require('mc.web').router() with its routes",
    function() require("mc.web").load_app("scripts/app.lua") end)
end

local function schedule(problems)
  local clock = require "mc.clock"
  if not lfs.attributes(host.root .. "/" .. clock.PATH) then return end
  guarded(problems, clock.PATH, "see the README's 'Scheduled jobs: the clock'",
    function() assert(clock.load(host.root .. "/" .. clock.PATH)) end)
end

local function application(problems)
  if not package.searchpath("check", package.path) then return end
  guarded(problems, "scripts/check.lua", "scripts/check.lua must return {run = function() ... end}", function()
    for _, p in ipairs(require("check").run()) do problems[#problems + 1] = p end
  end)
end

-- run() -> problems, files compiled
function _M.run()
  local problems = {}
  local n = syntax(problems)
  app(problems)
  schedule(problems)
  application(problems)
  return problems, n
end

function _M.format(p)
  local where = p.file and (p.line and (p.file .. ":" .. p.line) or p.file) or "multiconnect"
  return where .. ": " .. p.message .. (p.fix and (" (fix: " .. p.fix .. ")") or "")
end

function _M.main(args)
  if args[1] == "-h" or args[1] == "--help" then
    io.stdout:write("usage: multiconnect check\n"
      .. "  validates scripts/, the tenant hooks and the mappings; exit 1 on a problem\n")
    return 0
  end
  if args[1] ~= nil then
    io.stderr:write("multiconnect check: unexpected argument ", args[1], "\n")
    return 2
  end
  local problems, n = _M.run()
  for _, p in ipairs(problems) do io.stderr:write(_M.format(p), "\n") end
  if #problems > 0 then
    io.stderr:write(string.format("check: %d problem%s in %d Lua files and the application's checks\n",
      #problems, #problems == 1 and "" or "s", n))
    return 1
  end
  io.stdout:write(string.format("check: ok (%d Lua files, the app, the schedule, the application's checks)\n", n))
  return 0
end

return _M
