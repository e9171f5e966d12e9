-- `multiconnect new tenant|job` in a scratch copy of the project: the files it
-- writes pass `multiconnect check` and their own specs as written, and nothing is
-- ever written over an existing file.
local proc = require "support.process"
local file = require "mc.file"

local function project()
  return proc.copy_project({ "scripts", "mappings", "tools/templates", "spec" })
end

local function mc(root, args)
  return proc.mc(args, { cwd = root, env = { MC_ROOT = root, TENANTS_DIR = false, MC_DOTENV = "off" } })
end

describe("multiconnect new", function()
  local root, cleanup
  setup(function() root, cleanup = project() end)
  teardown(function() cleanup() end)

  it("writes a tenant's hooks and spec, named by the 18-character id, that check and pass", function()
    local res = mc(root, { "new", "tenant", "00D5g000004XyzA" })
    assert.equal(0, res.code, res.stderr)
    assert.truthy(res.stdout:find("wrote scripts/tenants/00D5g000004XyzAEAS.lua\n", 1, true))
    assert.truthy(res.stdout:find("wrote spec/tenants/00D5g000004XyzAEAS_spec.lua\n", 1, true))
    assert.truthy(res.stdout:find("next: edit scripts/tenants/00D5g000004XyzAEAS.lua", 1, true))
    local src = assert(file.read(root .. "/scripts/tenants/00D5g000004XyzAEAS.lua"))
    assert.truthy(src:find("function hooks.mapping(tenant, base)", 1, true))
    local check = mc(root, { "check" })
    assert.equal(0, check.code, check.stderr)
    local test = mc(root, { "test", "spec/tenants/00D5g000004XyzAEAS_spec.lua" })
    assert.equal(0, test.code, test.stdout .. test.stderr)
    assert.truthy(test.stdout:find("3 passed, 0 failed", 1, true), test.stdout)
  end)

  it("writes a job and its spec, which check and pass", function()
    local res = mc(root, { "new", "job", "reports.daily" })
    assert.equal(0, res.code, res.stderr)
    assert.truthy(file.exists(root .. "/scripts/jobs/reports/daily.lua"))
    local check = mc(root, { "check" })
    assert.equal(0, check.code, check.stderr)
    local test = mc(root, { "test", "spec/jobs/reports.daily_spec.lua" })
    assert.truthy(test.stdout:find("2 passed, 0 failed", 1, true), test.stdout .. test.stderr)
    local run = mc(root, { "run", "jobs:reports.daily", '["x"]' })
    assert.equal(0, run.code, run.stderr)
  end)

  it("never writes over a file", function()
    local path = root .. "/scripts/jobs/reports/daily.lua"
    proc.write(path, "-- mine\n")
    local res = mc(root, { "new", "job", "reports.daily" })
    assert.equal(1, res.code)
    assert.truthy(res.stderr:find("scripts/jobs/reports/daily.lua exists already", 1, true))
    assert.equal("-- mine\n", file.read(path))
  end)

  it("refuses an id that is not an org's, a bad job name, and an unknown kind", function()
    local res = mc(root, { "new", "tenant", "001000000000001" })
    assert.equal(1, res.code)
    assert.truthy(res.stderr:find("is not an organization id", 1, true), res.stderr)
    res = mc(root, { "new", "job", "../../etc/passwd" })
    assert.equal(1, res.code)
    assert.truthy(res.stderr:find("a job name is lower-case words joined by dots", 1, true), res.stderr)
    res = mc(root, { "new", "widget", "x" })
    assert.equal(2, res.code)
    assert.truthy(res.stderr:find("usage: multiconnect new tenant ORG_ID", 1, true))
  end)

  it("is followed by `test PATH`, which refuses a path that is not there rather than run the whole suite", function()
    local res = mc(root, { "test", "spec/tenants/typo_spec.lua" })
    assert.equal(2, res.code)
    assert.truthy(res.stderr:find("no such spec file or folder: spec/tenants/typo_spec.lua", 1, true), res.stderr)
  end)
end)
