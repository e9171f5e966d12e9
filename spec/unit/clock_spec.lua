-- mc.clock's pure parts: validating a schedule and deciding which ticks are due.
-- (The process itself: spec/e2e/clock_spec.lua.)
local clock = require "mc.clock"

local proc = require "support.process"

-- with_job(fn): fn(job, root) with a project root holding scripts/jobs/spec/noop.lua
local function with_job(fn)
  local root, cleanup = proc.tmpdir()
  os.execute("mkdir -p " .. proc.quote(root .. "/scripts/jobs/spec"))
  proc.write(root .. "/scripts/jobs/spec/noop.lua", "return { perform = function() end }\n")
  local ok, err = pcall(fn, "spec.noop", root)
  cleanup()
  assert(ok, err)
end

describe("mc.clock", function()
  it("due: every N on multiples of N, cron at second 0 of a matching minute", function()
    with_job(function(job, root)
      local entries = assert(clock.validate({
        { name = "five", job = job, every = 5 },
        { name = "quarter", job = job, cron = "*/15 * * * *" },
      }, root))
      local t0 = 1704067200 -- 2024-01-01T00:00:00Z
      assert.is_true(clock.due(entries[1], t0))
      assert.is_false(clock.due(entries[1], t0 + 1))
      assert.is_true(clock.due(entries[1], t0 + 5))
      assert.is_true(clock.due(entries[2], t0))
      assert.is_false(clock.due(entries[2], t0 + 1))       -- second 1 of a matching minute
      assert.is_false(clock.due(entries[2], t0 + 60))      -- minute 1
      assert.is_true(clock.due(entries[2], t0 + 15 * 60))
    end)
  end)

  it("validate keeps the fields and accepts an args function", function()
    with_job(function(job, root)
      local args = function(t) return { t } end
      local entries = assert(clock.validate({
        { name = "a", job = job, every = 1, args = args, queue = "low", retry = false },
      }, root))
      assert.equal(args, entries[1].args)
      assert.equal("low", entries[1].queue)
      assert.equal(false, entries[1].retry)
      assert.same({}, assert(clock.validate({}, root)))
    end)
  end)

  it("validate names the entry in every error", function()
    with_job(function(job, root)
      local cases = {
        { { { name = "a", job = job, every = 1.5 } }, "entry 1 (a): every must be a whole number" },
        { { { name = "a", job = job, every = 1, cron = "* * * * *" } }, "entry 1 (a): give cron or every" },
        { { { name = "a", job = job, cron = "* * *" } }, "entry 1 (a): cron \"* * *\": expected 5 fields" },
        { { { job = job, every = 1 } }, "entry 1: name must be" },
        { { { name = "a b", job = job, every = 1 } }, "entry 1 (a b): name must be" },
        { { { name = "a", every = 1 } }, "entry 1 (a): job must be" },
        { { { name = "a", job = "bad name!", every = 1 } }, "entry 1 (a): bad job name" },
        { { { name = "a", job = job, every = 1, retry = "x" } }, "entry 1 (a): retry must be" },
        { { { name = "a", job = job, every = 1, args = { 1, nil, 3 } } }, "entry 1 (a): args must be an array" },
        { { "x" }, "entry 1: must be a table" },
        { { { name = "a", job = "spec.other", every = 1 } },
          "entry 1 (a): no job spec.other (scripts/jobs/spec/other.lua)" },
        { { { name = "a", job = job, every = 1 }, x = 1 }, "without other keys" },
      }
      for _, case in ipairs(cases) do
        local entries, err = clock.validate(case[1], root)
        assert.is_nil(entries)
        assert.truthy(err:find(case[2], 1, true), "expected " .. case[2] .. " in: " .. err)
      end
    end)
  end)
end)
