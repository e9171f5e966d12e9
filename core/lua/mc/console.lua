-- mc.console: `multiconnect console`, the operator's Lua REPL.
--
-- Interactive (stdin a terminal): readline editing, history in $MC_HISTORY_FILE or
-- ~/.multiconnect_history (the last HISTORY_MAX lines), an incomplete chunk
-- continues on a `>>` prompt, as lua.c does. A line that is an expression (or
-- `=expr`) prints its values: strings and numbers as print() would, tables through
-- pl.pretty (a field whose name says secret, mc.redact, as [FILTERED]), mc.null
-- as `null`. An error prints its message and traceback and the
-- session goes on; Ctrl-C drops the line being typed; Ctrl-D ends the session.
--
-- Not a terminal (`echo 'orgs()' | multiconnect console`): the same, chunk by
-- chunk, without prompts or colour; the first chunk that raises, or returns
-- nil, err, ends it with the message on stderr and status 1.
-- `multiconnect console -e CHUNK` runs one chunk the same way.
--
-- The globals are the state's (`mc` and the standard libraries) plus the
-- operator helpers of scripts/console.lua (orgs, org, jobs, sql, reload).
local host = require "mc.host"
local redact = require "mc.redact"
local rl = require "mc.readline"
local pretty = require "pl.pretty"

local _M = {}

_M.HISTORY_MAX = 1000
local PROMPT, PROMPT2 = "mc> ", ">> "
local CHUNKNAME = "=console"

-- ---- printing --------------------------------------------------------------------

-- pl.pretty writes a userdata through tostring ("userdata: (nil)" for mc.null), so
-- a copy carries a token for it, replaced by `null` in the text.
local NULL_TOKEN = "\0mc.null\0"
local NULL_QUOTED = pretty.write(NULL_TOKEN)

local function display_copy(v, seen)
  if v == mc.null then return NULL_TOKEN end
  if type(v) ~= "table" then return v end
  if seen[v] then return seen[v] end
  local copy = {}
  seen[v] = copy
  for k, x in pairs(v) do
    -- a field named as a secret (mc.redact) is shown filtered: rows of sql("SELECT
    -- * ...") hold the sealed tokens; the value itself, asked for, still prints
    if type(k) == "string" and type(x) == "string" and redact.is_secret_key(k) then x = redact.FILTERED end
    copy[display_copy(k, seen)] = display_copy(x, seen)
  end
  return copy
end

-- format(v) -> the text the console shows for one value
function _M.format(v)
  if v == mc.null then return "null" end
  if type(v) ~= "table" then return tostring(v) end
  local text = pretty.write(display_copy(v, {}))
  return (text:gsub(NULL_QUOTED:gsub("%p", "%%%0"), "null"))
end

local function format_values(res)
  local out = {}
  for i = 1, res.n do out[i] = _M.format(res[i]) end
  return table.concat(out, "\t")
end

local function error_text(err)
  if type(err) == "string" then return err end
  local mt = getmetatable(err)
  if mt and mt.__tostring then return tostring(err) end
  return string.format("(error object is a %s value)", type(err))
end

-- The traceback without the console's own frames (xpcall and below).
local function traceback(err)
  local text = debug.traceback(error_text(err), 2)
  return (text:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

-- ---- reading chunks --------------------------------------------------------------

local function incomplete(err)
  return err:sub(-5) == "<eof>"
end

-- read_chunk(read) -> fn | false (empty or cancelled line) | nil, err (syntax
-- error) | nil (end of input). As lua.c: a first line that compiles after `return`
-- is an expression; otherwise lines are joined until the chunk is complete.
function _M.read_chunk(read)
  local line = read(PROMPT)
  if line == nil then return nil end
  if line == false or line:match("^%s*$") then return false end
  if line:sub(1, 1) == "=" then line = "return " .. line:sub(2) end
  local fn = load("return " .. line .. ";", CHUNKNAME, "t")
  if fn then return fn end
  local buf = line
  while true do
    local err
    fn, err = load(buf, CHUNKNAME, "t")
    if fn then return fn end
    if not incomplete(err) then return nil, err end
    local more = read(PROMPT2)
    if more == false then return false end
    if more == nil then return nil, err end
    buf = buf .. "\n" .. more
  end
end

-- run(fn) -> true, results (table.pack) | false, message with traceback
function _M.run(fn)
  local res = table.pack(xpcall(fn, traceback))
  if not res[1] then return false, res[2] end
  return true, table.pack(table.unpack(res, 2, res.n))
end

-- ---- helpers ---------------------------------------------------------------------

-- install_helpers() -> true | nil, err: the globals scripts/console.lua returns.
-- A helper file that fails to load leaves the previous helpers in place.
function _M.install_helpers()
  package.loaded["console"] = nil
  local ok, helpers = pcall(require, "console")
  if not ok then return nil, "scripts/console.lua: " .. error_text(helpers) end
  if type(helpers) ~= "table" then return nil, "scripts/console.lua: must return a table of globals" end
  for name, value in pairs(helpers) do _G[name] = value end
  return true
end

-- ---- the two modes ---------------------------------------------------------------

-- A non-interactive chunk failed: it raised, or returned nil, err.
local function failed(ok, res)
  if not ok then return res end
  if res.n >= 2 and res[1] == nil then return error_text(res[2]) end
  return nil
end

-- script(read): stdin or -e, without prompts; 0, or 1 at the first failure.
local function script(read)
  while true do
    local fn, err = _M.read_chunk(read)
    if fn == nil and err == nil then return 0 end
    if fn == nil then
      io.stderr:write("multiconnect console: ", err, "\n")
      return 1
    end
    if fn then
      local ok, res = _M.run(fn)
      local why = failed(ok, res)
      if why then
        io.stderr:write("multiconnect console: ", why, "\n")
        return 1
      end
      if res.n > 0 then io.stdout:write(format_values(res), "\n") end
    end
  end
end

-- -e: the whole text is one chunk (its locals span its lines), given to
-- read_chunk as one "line" so that an expression prints its values.
local function one_chunk(text)
  local given = false
  return function(prompt)
    if given or prompt ~= PROMPT then return nil end
    given = true
    return text
  end
end

local function history_file()
  local path = os.getenv("MC_HISTORY_FILE")
  if path and path ~= "" then return path end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.multiconnect_history" end
  return nil
end

-- A readline reader that keeps each line typed in the history and its file.
local function tty_reader(path)
  rl.stifle_history(_M.HISTORY_MAX)
  if path and not rl.read_history(path) then
    local ok, err = rl.write_history(path) -- append_history needs the file to exist
    if not ok then
      io.stderr:write("multiconnect console: history: ", err, "\n")
      path = nil
    end
  end
  local last
  return function(prompt)
    local line = rl.readline(prompt)
    if line and line:match("%S") and line ~= last then
      last = line
      rl.add_history(line)
      if path then rl.append_history(1, path) end
    end
    return line
  end, function()
    if path then rl.history_truncate_file(path, _M.HISTORY_MAX) end
  end
end

local function interactive()
  local color = rl.isatty(1) and (os.getenv("NO_COLOR") or "") == ""
  local red, reset = color and "\27[31m" or "", color and "\27[0m" or ""
  local read, close = tty_reader(history_file())
  io.stdout:write(string.format(
    "multiconnect %s console: orgs(), org(id), jobs, sql(query, ...), reload(), mc.*; Ctrl-D quits\n",
    host.version))
  while true do
    local fn, err = _M.read_chunk(read)
    if fn == nil and err == nil then break end
    if fn == nil then
      io.stdout:write(red, err, reset, "\n")
    elseif fn then
      local ok, res = _M.run(fn)
      if not ok then
        io.stdout:write(red, res, reset, "\n")
      elseif res.n > 0 then
        io.stdout:write(format_values(res), "\n")
      end
    end
    io.stdout:flush()
  end
  io.stdout:write("\n")
  close()
  return 0
end

local USAGE = "usage: multiconnect console [-e CHUNK]\n"

function _M.main(args)
  local chunk
  if args[1] == "-e" and args[2] and #args == 2 then
    chunk = args[2]
  elseif #args > 0 then
    io.stderr:write(USAGE)
    return 2
  end
  local ok, err = _M.install_helpers()
  if not ok then io.stderr:write("multiconnect console: ", err, "\n") end
  if chunk then return script(one_chunk(chunk)) end
  if not rl.isatty(0) then
    return script(function() return io.stdin:read("l") end)
  end
  return interactive()
end

return _M
