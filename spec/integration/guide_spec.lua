-- docs/guide.md, run as written in a copy of the project: each `sh` block's
-- commands, each file a `lua` block shows (its first line names the path), and
-- each `text` block's lines expected in the output of the command before it.
-- `make dev` is played by support.stack (the same web, worker and sandbox
-- processes, on free ports and a private database), with the copy's
-- scripts/tenants/ as the tenant hooks; `localhost:5100` is that sandbox.
local proc = require "support.process"
local stack = require "support.stack"
local host = require "mc.host"
local http = require "mc.http"
local file = require "mc.file"

local GUIDE = "docs/guide.md"

-- blocks(text) -> { {lang =, code =, line =}, ... } in order
local function blocks(text)
  local out, current, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if current then
      if line == "```" then
        current.code = table.concat(current.lines, "\n")
        out[#out + 1], current = current, nil
      else
        current.lines[#current.lines + 1] = line
      end
    else
      local lang = line:match("^```(%w+)$")
      if lang then current = { lang = lang, lines = {}, line = n + 1 } end
    end
  end
  return out
end

-- words('a "b c" \'d\'') -> {"a", "b c", "d"}: the shell's quoting, no more
local function words(line)
  local out, i = {}, 1
  while i <= #line do
    local c = line:sub(i, i)
    if c == " " then
      i = i + 1
    else
      local word = ""
      while i <= #line and line:sub(i, i) ~= " " do
        c = line:sub(i, i)
        if c == '"' or c == "'" then
          local close = assert(line:find(c, i + 1, true), "unclosed quote: " .. line)
          word = word .. line:sub(i + 1, close - 1)
          i = close + 1
        else
          word, i = word .. c, i + 1
        end
      end
      out[#out + 1] = word
    end
  end
  return out
end

describe(GUIDE, function()
  local root, cleanup, s

  setup(function()
    root, cleanup = proc.copy_project({ "scripts", "mappings", "tools/templates", "tools/callback",
      "tools/env-values.lua", "spec" })
  end)
  teardown(function()
    if s then s:stop() end
    cleanup()
  end)

  local function env()
    local e = { MC_ROOT = root, MC_DOTENV = "off", TENANTS_DIR = false }
    for k, v in pairs(s and s.env or {}) do e[k] = v end
    return e
  end

  -- run(line) -> output (stdout and stderr)
  local function run(line)
    local argv = words(line)
    if argv[1] == "make" and argv[2] == "dev" then
      s = stack.start({ name = "guide", app_db = 1, sandbox_db = 2,
        env = { TENANTS_DIR = root .. "/scripts/tenants" } })
      return ""
    elseif argv[1] == "bin/multiconnect" then
      table.remove(argv, 1)
      local res = proc.mc(argv, { cwd = root, env = env() })
      return res.stdout .. res.stderr, res.code
    elseif argv[1] == "tools/callback" then
      argv[1] = root .. "/tools/callback"
      local res = proc.run(argv, { cwd = root, env = env() })
      return res.stdout .. res.stderr, res.code
    elseif argv[1] == "curl" then
      local url = argv[#argv]:gsub("^http://localhost:5100", assert(s, "make dev first").sandbox_url)
      local res = assert(http.get(url))
      return res.body, res.status == 200 and 0 or res.status
    end
    error(GUIDE .. ": the spec cannot run " .. line)
  end

  it("does what it says, from a copy of the project", function()
    local text = assert(file.read(host.root .. "/" .. GUIDE))
    local last, output, steps = nil, nil, 0
    for _, b in ipairs(blocks(text)) do
      if b.lang == "sh" then
        for line in b.code:gmatch("[^\n]+") do
          last = line
          output = run(line)
          steps = steps + 1
        end
      elseif b.lang == "lua" then
        local path = assert(b.code:match("^%-%- (%S+)\n"),
          GUIDE .. ":" .. b.line .. ": a file block starts with -- <path>")
        proc.write_files(root, { [path] = b.code .. "\n" })
      elseif b.lang == "text" then
        for want in b.code:gmatch("[^\n]+") do
          -- after `make dev`, what the service does takes a moment: ask again
          local seen = output:find(want, 1, true) or (s and proc.wait_for(function()
            output = run(last)
            return output:find(want, 1, true)
          end, 60))
          assert.truthy(seen, string.format("%s:%d: %q not in the output of %s:\n%s",
            GUIDE, b.line, want, last, output))
        end
      end
    end
    assert.is_true(steps >= 7, steps .. " commands")
    assert.equal("active", s:state("00D5e000000GlBxEAK"))
  end)
end)
