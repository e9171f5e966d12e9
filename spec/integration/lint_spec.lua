-- tools/lint (`make lint`) in a scratch copy of the project: clean as committed,
-- and a Lua warning or a C file out of format fails it, by name, with the tool's
-- own output.
local proc = require "support.process"

local PATHS = { "scripts", "sandbox", "core", "spec", "bench", "fuzz", "tools/lint", "tools/env-values.lua",
  ".luacheckrc", ".clang-format" }

describe("tools/lint", function()
  local root, cleanup

  before_each(function() root, cleanup = proc.copy_project(PATHS) end)
  after_each(function() cleanup() end)

  local function lint()
    return proc.run({ root .. "/tools/lint" })
  end

  it("passes the tree as committed: one line per check, then the sum tools/test reads", function()
    local r = lint()
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.equal("lint: luacheck ok\nlint: cppcheck ok\nlint: clang-format ok\n3 passed, 0 failed\n", r.stdout)
  end)

  it("fails on an unused variable and on a C file out of format, naming each", function()
    proc.write_files(root, {
      ["scripts/lint_probe.lua"] = "local unused = 1\nreturn {}\n",
      ["core/lint_probe.c"] = "int lint_probe(void);\nint lint_probe(void) {  return 1; }\n",
    })
    local r = lint()
    assert.equal(1, r.code)
    assert.matches("lint: luacheck: 1 warnings\n  scripts/lint_probe.lua:1:7: (W211) unused variable 'unused'",
      r.stdout, 1, true)
    assert.matches("lint: cppcheck ok\n", r.stdout, 1, true)
    assert.matches("lint: clang%-format: %d+ warnings\n  core/lint_probe%.c:2:", r.stdout)
    assert.matches("\n1 passed, 2 failed\n$", r.stdout)
  end)
end)
