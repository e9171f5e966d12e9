-- tools/fuzz (`make fuzz-replay` and the bounded run, which `make test` runs) in a
-- scratch copy of the project: the corpus as committed replays clean, one line per
-- target and the sum tools/test reads; an input that makes a target raise fails that
-- target, naming it, the input and the error; and `run` fails a target on an input
-- the fuzzer made, printing that input. Needs `make fuzz` (make test builds
-- bin/fuzz-lua and bin/fuzz-redis-reply first).
local proc = require "support.process"
local host = require "mc.host"

local PATHS = { "fuzz", "tools/fuzz", "scripts", "mappings" }

describe("tools/fuzz replay", function()
  local root, cleanup

  setup(function()
    for _, bin in ipairs({ "bin/fuzz-lua", "bin/fuzz-redis-reply" }) do
      local f = io.open(host.root .. "/" .. bin, "rb")
      assert(f, bin .. " is missing: run make fuzz (make test builds it)")
      f:close()
    end
  end)
  before_each(function() root, cleanup = proc.copy_project(PATHS) end)
  after_each(function() cleanup() end)

  it("replays every target's corpus: one line each, then the sum", function()
    local r = proc.run({ root .. "/tools/fuzz", "replay" })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local targets = 0
    for line in r.stdout:gmatch("[^\n]+") do
      if line:match("^fuzz: ") then
        targets = targets + 1
        assert.matches("^fuzz: [%w_]+ ok %(%d+ inputs replayed%)$", line)
      end
    end
    assert.equal(6, targets)
    assert.matches("\n6 passed, 0 failed\n$", r.stdout)
  end)

  it("fails a target whose input makes it raise, naming the input and the error", function()
    proc.write_files(root, {
      ["fuzz/targets/probe.lua"] = "return function(data) if data == 'boom' then error('probe went off') end end\n",
      ["fuzz/corpus/probe/quiet"] = "quiet",
      ["fuzz/corpus/probe/boom"] = "boom",
    })
    local r = proc.run({ root .. "/tools/fuzz", "replay", "probe", "json" })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("fuzz: probe FAILED", r.stdout, 1, true)
    assert.matches("Running: fuzz/corpus/probe/boom", r.stdout, 1, true)
    assert.matches("fuzz: target probe raised: .*probe.lua:1: probe went off", r.stdout)
    assert.matches("fuzz: json ok", r.stdout, 1, true)
    assert.matches("\n1 passed, 1 failed\n$", r.stdout)
  end)

  it("run: fuzzes each target FUZZ_SECONDS, and fails one on an input it made, printing it", function()
    proc.write_files(root, {
      ["fuzz/targets/probe.lua"] = "return function(data) if #data > 5 then error('probe went off') end end\n",
      ["fuzz/corpus/probe/quiet"] = "quiet",
    })
    local r = proc.run({ "env", "FUZZ_SECONDS=3", root .. "/tools/fuzz", "run", "json", "probe" })
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("fuzz: json ok %(%d+ runs in 3 s%)", r.stdout)
    assert.matches("fuzz: probe FAILED", r.stdout, 1, true)
    assert.matches("probe went off", r.stdout, 1, true)
    local unit = r.stdout:match("Test unit written to (%S+)")
    assert.truthy(unit, r.stdout)
    local f = assert(io.open(root .. "/" .. unit, "rb"))
    local input = f:read("a")
    f:close()
    assert.truthy(#input > 5)
    assert.matches("the input (" .. #input .. " bytes; base64", r.stdout, 1, true)
    assert.matches(require("mc.crypto").to_base64(input):sub(1, 8), r.stdout, 1, true)
    assert.matches("\n1 passed, 1 failed\n$", r.stdout)
  end)
end)
