-- The Makefile's rules as make itself reads them (`make -n -p`): on a fresh
-- machine `make -j2` runs `deps` (tools/setup) in parallel with the compiles, so
-- everything that compiles against the installed packages must wait for it.
local host = require "mc.host"
local proc = require "support.process"

-- rules() -> {target = "prerequisites | order-only"} for the build and bin targets
local function rules()
  local r = proc.run({ "make", "-C", host.root, "-n", "-p", "bin/multiconnect", "bin/multiconnect-asan" })
  assert.equal(0, r.code, r.stderr)
  local out = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local target, prereqs = line:match("^([%w_./-]+):%s*(.*)$")
    if target and (target:match("^build/") or target:match("^bin/")) then out[target] = prereqs end
  end
  return out
end

local function order_only(prereqs)
  local after = prereqs:match("|%s*(.*)$") or ""
  local words = {}
  for w in after:gmatch("%S+") do words[w] = true end
  return words
end

describe("Makefile", function()
  it("builds every object, the embedded Lua and both binaries only after deps", function()
    local all = rules()
    local checked = 0
    for target, prereqs in pairs(all) do
      if target:match("%.o$") or target == "build/embedded.c" or target:match("^bin/") then
        assert.is_true(order_only(prereqs).deps, target .. " lacks `| deps`: " .. prereqs)
        checked = checked + 1
      end
    end
    -- both embedded.o, embedded.c, both binaries, and the objects of core/*.c twice
    assert.truthy(all["build/normal/embedded.o"] and all["build/asan/embedded.o"] and all["build/embedded.c"])
    assert.is_true(checked >= 5 + 2, "rules found: " .. checked)
  end)
end)
