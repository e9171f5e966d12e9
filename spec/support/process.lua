-- support.process: run the real binary (or any command) from a spec and collect
-- what it did. Specs of the command line use it instead of stand-ins.
local host = require "mc.host"
local luassert = require "luassert"

local _M = {}

_M.exe = host.exe -- the binary running the specs: the ASan suite spawns the ASan twin

function _M.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  os.remove(path)
  return data
end

-- run(argv, opts) -> {code =, stdout =, stderr =}
--   argv: array of words (quoted here); opts.env: {NAME = value | false}
--   (false unsets); opts.cwd; opts.stdin: a string fed to the command.
function _M.run(argv, opts)
  opts = opts or {}
  local words = {}
  for i, a in ipairs(argv) do words[i] = _M.quote(a) end
  local unset, set = {}, {}
  for k, v in pairs(opts.env or {}) do
    if v == false then unset[#unset + 1] = "-u " .. k else set[#set + 1] = _M.quote(k .. "=" .. v) end
  end
  -- env(1) takes its -u options before any assignment
  local env = { "env", table.concat(unset, " "), table.concat(set, " ") }
  local out, err = os.tmpname(), os.tmpname()
  local input = "/dev/null"
  if opts.stdin then
    input = os.tmpname()
    local f = assert(io.open(input, "wb"))
    f:write(opts.stdin)
    f:close()
  end
  local cmd = string.format("cd %s && %s %s <%s >%s 2>%s", _M.quote(opts.cwd or "."),
    table.concat(env, " "), table.concat(words, " "), input, out, err)
  local _, how, code = os.execute(cmd)
  if opts.stdin then os.remove(input) end
  return { code = how == "exit" and code or 128 + code, stdout = slurp(out), stderr = slurp(err) }
end

-- mc(args..., opts): run this multiconnect binary.
function _M.mc(args, opts)
  local argv = { _M.exe }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return _M.run(argv, opts)
end

-- Valgrind checks run with the plain binary only (the ASan twin checks leaks its
-- own way) and where valgrind is installed.
_M.can_valgrind = not _M.exe:match("%-asan$") and os.execute("command -v valgrind >/dev/null 2>&1") == true

-- leak_it(name, fn): busted's `it` where valgrind checks run, `pending` elsewhere.
function _M.leak_it(name, fn)
  local busted = require "busted"
  return (_M.can_valgrind and busted.it or busted.pending)(name, fn)
end

-- assert_no_leaks(args, opts): runs this binary with args under valgrind and fails
-- on a definite leak (valgrind exits 99) or if valgrind did not run to the end.
function _M.assert_no_leaks(args, opts)
  local argv = { "valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
    "--error-exitcode=99", _M.exe }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = _M.run(argv, opts)
  luassert.equal(0, r.code, r.stderr)
  luassert.truthy(r.stderr:find("All heap blocks were freed", 1, true)
    or r.stderr:find("definitely lost: 0 bytes", 1, true), r.stderr)
end

-- assert_script_no_leaks(source, args?, opts?): writes the Lua source to a
-- scratch file and runs it (`run FILE args...`) under assert_no_leaks.
function _M.assert_script_no_leaks(source, args, opts)
  local dir, cleanup = _M.tmpdir()
  local argv = { "run", _M.write(dir .. "/leak.lua", source) }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local ok, err = pcall(_M.assert_no_leaks, argv, opts)
  cleanup()
  if not ok then error(err, 0) end
end

-- wait_for(fn, seconds, what) -> fn's first truthy result, polling every 50 ms
-- for at most seconds (30). When time runs out: nil, or, given what (a few
-- words: "the worker to exit"), an error that names it.
function _M.wait_for(fn, seconds, what)
  local socket = require "socket"
  seconds = seconds or 30
  local deadline = socket.gettime() + seconds
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  local v = fn() -- once more: the last sleep may have overshot the deadline
  if v then return v end
  if not what then return nil end
  error(string.format("timed out after %g s waiting for %s", seconds, what), 2)
end

-- project(files) -> root, cleanup: a scratch MC_ROOT holding the given files
-- ({["scripts/jobs/x.lua"] = "..."}).
function _M.project(files)
  local root, cleanup = _M.tmpdir()
  _M.write_files(root, files)
  return root, cleanup
end

-- copy_project(paths) -> root, cleanup: a scratch MC_ROOT with copies of these
-- paths of the project ("scripts", "tools/templates", ...) and a link to its
-- bin/, for a spec that changes files the way a user of a checkout would.
function _M.copy_project(paths)
  local root, cleanup = _M.tmpdir()
  local quoted = {}
  for i, p in ipairs(paths) do quoted[i] = _M.quote(p) end
  assert(os.execute(string.format("cd %s && cp -r --parents %s %s && ln -s %s %s", _M.quote(host.root),
    table.concat(quoted, " "), _M.quote(root), _M.quote(host.root .. "/bin"), _M.quote(root .. "/bin"))))
  return root, cleanup
end

-- write_files(root, files): files (paths relative to root) with their folders.
function _M.write_files(root, files)
  for path, content in pairs(files or {}) do
    local dir = path:match("^(.*)/")
    if dir then os.execute("mkdir -p " .. _M.quote(root .. "/" .. dir)) end
    _M.write(root .. "/" .. path, content)
  end
end

-- A scratch directory, removed by the returned cleanup function.
function _M.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  assert(os.execute("mkdir -p " .. _M.quote(path)))
  return path, function() os.execute("rm -rf " .. _M.quote(path)) end
end

function _M.write(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

return _M
