-- $MC_ROOT/.env: every command reads it at start, the process's own
-- environment winning (core/dotenv.c); `test` and what it starts never do.
local proc = require "support.process"

describe(".env", function()
  local root, cleanup

  before_each(function()
    root, cleanup = proc.project({
      ["scripts/show.lua"] = [[
        local names = { "PLAIN", "SPACED", "SINGLE", "DOUBLE", "EXPORTED", "EMPTY", "WINS", "HASH", "MISSING" }
        local out = {}
        for _, n in ipairs(names) do out[#out + 1] = n .. "=" .. tostring(os.getenv(n)) end
        print(table.concat(out, "|"))
      ]],
    })
  end)
  after_each(function() cleanup() end)

  -- the spec process itself runs with MC_DOTENV=off (the test command sets it):
  -- unset it for the child, as a developer's shell would have it
  local function show(env)
    env = env or {}
    env.MC_ROOT, env.MC_DOTENV = root, env.MC_DOTENV or false
    return proc.mc({ "run", "show" }, { env = env })
  end

  it("gives each command the file's values; the environment wins", function()
    proc.write(root .. "/.env", table.concat({
      "# the local stand-ins", "", "PLAIN=one", "  SPACED =  two words  ", "SINGLE='a \\n b # c'",
      [[DOUBLE="line\nnext \"q\" \\"]], "export EXPORTED=yes", "EMPTY=", "WINS=from-file", "HASH=a#b",
    }, "\n") .. "\n")
    local r = show({ WINS = "from-shell" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("PLAIN=one|SPACED=two words|SINGLE=a \\n b # c|DOUBLE=line\nnext \"q\" \\|EXPORTED=yes|EMPTY=|"
      .. "WINS=from-shell|HASH=a#b|MISSING=nil\n", r.stdout)
  end)

  it("is optional: no file, no change", function()
    local r = show()
    assert.equal(0, r.code, r.stderr)
    assert.matches("PLAIN=nil", r.stdout, 1, true)
  end)

  it("refuses a malformed line, naming the file and the line, and runs nothing", function()
    for _, bad in ipairs({ "JUST_A_NAME", "1ABC=x", "BAD-NAME=x", "OPEN=\"never closed", "TAIL='x' y" }) do
      proc.write(root .. "/.env", "GOOD=1\n" .. bad .. "\n")
      local r = show()
      assert.equal(1, r.code, bad)
      assert.equal("", r.stdout, bad)
      assert.matches("^multiconnect: " .. root:gsub("%p", "%%%0") .. "/%.env:2: ", r.stderr)
    end
  end)

  it("takes a last line that fills the reader's buffer exactly, and refuses a longer one", function()
    proc.write(root .. "/.env", "PLAIN=" .. string.rep("x", 8191 - 6)) -- 8191 bytes, no newline
    local r = show()
    assert.equal(0, r.code, r.stderr)
    assert.matches("PLAIN=" .. string.rep("x", 8185) .. "|", r.stdout, 1, true)
    proc.write(root .. "/.env", "PLAIN=" .. string.rep("x", 9000) .. "\n")
    r = show()
    assert.equal(1, r.code)
    assert.matches("/%.env:1: line too long", r.stderr)
  end)

  it("is skipped with MC_DOTENV=off", function()
    proc.write(root .. "/.env", "PLAIN=one\n")
    assert.matches("PLAIN=nil", show({ MC_DOTENV = "off" }).stdout, 1, true)
  end)

  it("is never read by `test`, nor by what the specs start", function()
    proc.write(root .. "/.env", "PLAIN=one\n")
    proc.write_files(root, { ["spec/env_spec.lua"] = [[
      it("sees no .env", function()
        assert.is_nil(os.getenv("PLAIN"))
        assert.equal("off", os.getenv("MC_DOTENV"))
      end)
    ]] })
    local r = proc.mc({ "test", "spec/env_spec.lua" }, { cwd = root, env = { MC_ROOT = root, MC_DOTENV = false } })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("1 passed, 0 failed", r.stdout, 1, true)
  end)
end)
