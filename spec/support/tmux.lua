-- support.tmux: drive an interactive program through a pseudo-terminal, as a
-- person at a keyboard would, with tmux (a server of its own per session, on a
-- private socket, so that nothing touches the user's tmux).
--
--   local t = tmux.start({ proc.exe, "console" }, { HOME = dir })
--   t:type("1 + 1"); t:keys("Enter")
--   assert(t:wait_for("\n2\n"))      -- the screen text, once it holds that
--   t:stop()
local proc = require "support.process"

local _M = {}

_M.available = os.execute("command -v tmux >/dev/null 2>&1") == true

local Session = {}
Session.__index = Session

local counter = 0

local function run(self, args)
  local words = { "tmux", "-L", self.socket }
  for _, a in ipairs(args) do words[#words + 1] = proc.quote(a) end
  local p = io.popen(table.concat(words, " ") .. " 2>/dev/null", "r")
  local out = p:read("a")
  p:close()
  return out
end

-- start(argv, env) -> session: argv runs in a 120x40 window, with env added
-- to a clean environment (TERM=xterm, PATH, the sanitizers' options)
function _M.start(argv, env)
  counter = counter + 1
  local self = setmetatable({ socket = string.format("mc-spec-%d-%d", require("mc.host").pid(), counter) }, Session)
  local words = { "env", "-i", "TERM=xterm", "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin") }
  for _, name in ipairs({ "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS" }) do
    if os.getenv(name) then words[#words + 1] = name .. "=" .. os.getenv(name) end
  end
  for k, v in pairs(env or {}) do words[#words + 1] = k .. "=" .. v end
  for _, a in ipairs(argv) do words[#words + 1] = a end
  local quoted = {}
  for i, w in ipairs(words) do quoted[i] = proc.quote(w) end
  -- remain-on-exit keeps the pane (and what the program printed last) readable
  run(self, { "new-session", "-d", "-x", "120", "-y", "40", table.concat(quoted, " ") })
  run(self, { "set-option", "-t", "0", "remain-on-exit", "on" })
  return self
end

-- type(text): the characters, literally (no key names)
function Session:type(text)
  run(self, { "send-keys", "-t", "0", "-l", text })
end

-- keys(...): key names: "Enter", "Up", "C-c", "C-d"
function Session:keys(...)
  local args = { "send-keys", "-t", "0" }
  for _, k in ipairs({ ... }) do args[#args + 1] = k end
  run(self, args)
end

-- screen() -> the pane's text, scrollback included, without trailing blanks on
-- each line and at the end
function Session:screen()
  local text = run(self, { "capture-pane", "-p", "-J", "-S", "-1000", "-t", "0" })
  return (text:gsub("[ \t]+\n", "\n"):gsub("%s+$", ""))
end

-- dead() -> true once the program has exited
function Session:dead()
  return run(self, { "display-message", "-p", "-t", "0", "#{pane_dead}" }):match("^1") ~= nil
end

-- wait_for(text[, seconds]) -> the screen once it holds text (plain), or nil
function Session:wait_for(text, seconds)
  return proc.wait_for(function()
    local s = self:screen()
    return s:find(text, 1, true) and s
  end, seconds or 20)
end

function Session:stop()
  run(self, { "kill-server" })
end

return _M
