-- `multiconnect check` on a copy of this project: clean as shipped, and each kind
-- of mistake an ISV engineer makes named with its file, line and fix, exit 1.
-- Also: the example in scripts/tenants/README.md, as written, passes the check and
-- does what its comment says.
local proc = require "support.process"
local md = require "support.markdown"
local host = require "mc.host"
local file = require "mc.file"
local json = require "mc.json"
local pg = require "mc.pg"
local pg_db = require "support.pg_db"

local ORG = "00D5g000004XyzAEAS"

-- A scratch copy of scripts/ and mappings/ with files changed on top.
local function project(files)
  local root, cleanup = proc.copy_project({ "scripts", "mappings" })
  proc.write_files(root, files)
  return root, cleanup
end

local function check(files)
  local root, cleanup = project(files)
  local res = proc.mc({ "check" }, { env = { MC_ROOT = root, TENANTS_DIR = false, MC_DOTENV = "off" } })
  return res, root, cleanup
end

local function example()
  local readme = assert(file.read(host.root .. "/scripts/tenants/README.md"))
  local blocks = md.code_blocks(readme, "lua")
  assert.equal(1, #blocks)
  return blocks[1].code
end

describe("multiconnect check", function()
  it("passes the project as shipped", function()
    local res = proc.mc({ "check" }, { env = { TENANTS_DIR = false } })
    assert.equal(0, res.code, res.stderr)
    assert.truthy(res.stdout:find("check: ok", 1, true))
  end)

  it("passes the tenant README's example, which adds a Contact field for its org only", function()
    local res, root, cleanup = check({ ["scripts/tenants/" .. ORG .. ".lua"] = example() })
    assert.equal(0, res.code, res.stderr)
    local script = proc.write(root .. "/probe.lua", [[
      local hooks, mapping = require "lib.hooks", require "onboarding.mapping"
      local fields = {}
      for _, id in ipairs({ "]] .. ORG .. [[", "00D000000000001EAA" }) do
        local ok, doc = hooks.run({ org_id = id, org_name = "Acme" }, "mapping", assert(mapping.base(id)))
        assert(ok, doc)
        for _, m in ipairs(doc.mappings) do
          if m.object_name == "Contact" then fields[#fields + 1] = m.config.fields.HasOptedOutOfEmail ~= nil end
        end
      end
      print(require("mc.json").encode(fields))
    ]])
    local out = proc.mc({ "run", script }, { env = { MC_ROOT = root, TENANTS_DIR = false, MC_DOTENV = "off" } })
    cleanup()
    assert.equal(0, out.code, out.stderr)
    assert.same({ true, false }, json.decode(out.stdout))
  end)

  local cases = {
    { "a syntax error, with its line", { ["scripts/jobs/broken.lua"] = "local x = 1\nx = = 2\n" },
      "scripts/jobs/broken.lua:2: unexpected symbol near '=' (fix: correct the syntax)" },
    { "a misspelt hook", { ["scripts/tenants/" .. ORG .. ".lua"] = "return { maping = function() end }" },
      "scripts/tenants/" .. ORG .. ".lua: defines 'maping', which is not a hook "
        .. "(fix: the hooks are database, email, mapping," },
    { "a hook that is not a function", { ["scripts/tenants/" .. ORG .. ".lua"] = "return { email = 'no' }" },
      "hook email is a string, not a function" },
    { "a file that returns no table", { ["scripts/tenants/" .. ORG .. ".lua"] = "local h = {}" },
      "returns a nil, not a table of hooks (fix: end the file with `return hooks`)" },
    { "a tenant file no org would read", { ["scripts/tenants/acme.lua"] = "return {}" },
      "scripts/tenants/acme.lua: never read: a tenant file is default.lua or named by its org id" },
    { "an error while loading, with its line",
      { ["scripts/tenants/" .. ORG .. ".lua"] = "local h = {}\nerror('boom')\nreturn h" },
      "scripts/tenants/" .. ORG .. ".lua:2: boom" },
    { "a mapping hook whose document Connect would refuse", { ["scripts/tenants/" .. ORG .. ".lua"] = [[
        return { mapping = function(t, base)
          local doc = default.mapping(t, base)
          doc.mappings[#doc.mappings + 1] = { object_name = "Contact", config = { access = "read_only",
            sf_polling_seconds = 600, sf_notify_enabled = false,
            fields = { Id = {}, SystemModstamp = {}, IsDeleted = {} },
            indexes = { Id = { unique = true }, SystemModstamp = { unique = false } } } }
          return doc
        end }]] },
      "the mapping hook returns a mapping Heroku Connect would refuse: "
        .. "invalid mapping: mappings[5].object_name: Contact is mapped twice" },
    { "a schema name no tenant may have",
      { ["scripts/tenants/" .. ORG .. ".lua"] = "return { schema_name = function() return 'public' end }" },
      "tenant hook schema_name gave public, not a tenant schema name" },
    { "a mapping file that is not JSON", { ["mappings/" .. ORG .. ".json"] = "{\"version\": 1," },
      "mappings/" .. ORG .. ".json: not JSON:" },
    { "a mapping file that is not a mapping", { ["mappings/default.json"] = "{\"version\": 1, \"mappings\": {}}" },
      "mappings/default.json: invalid mapping" },
    { "a schedule naming a job that does not exist",
      { ["scripts/schedule.lua"] = "return { { name = 'x', job = 'no.such', every = 60 } }" },
      "scripts/schedule.lua: entry 1 (x):" },
    { "an app that returns no router", { ["scripts/app.lua"] = "return 42" },
      "scripts/app.lua: must return a router" },
  }
  for _, case in ipairs(cases) do
    it("names " .. case[1] .. ", and exits 1", function()
      local res, _, cleanup = check(case[2])
      cleanup()
      assert.equal(1, res.code, res.stdout)
      assert.truthy(res.stderr:find(case[3], 1, true), res.stderr)
      assert.truthy(res.stderr:find("check: %d+ problems? in"), res.stderr)
    end)
  end

  it("refuses an argument it does not know", function()
    local res = proc.mc({ "check", "--fast" })
    assert.equal(2, res.code)
    assert.truthy(res.stderr:find("unexpected argument --fast", 1, true))
  end)

  describe("in the release phase (`multiconnect release`)", function()
    local url
    before_each(function() url = pg_db.create("mc_spec_release") end)
    after_each(function() pg_db.drop("mc_spec_release") end)

    local function release(files)
      local root, cleanup = project(files)
      assert(os.execute("cp -r " .. proc.quote(host.root .. "/sql") .. " " .. proc.quote(root)))
      local res = proc.mc({ "release" }, { env = { MC_ROOT = root, TENANTS_DIR = false, MC_DOTENV = "off",
        DATABASE_URL = url } })
      cleanup()
      local conn <close> = assert(pg.connect(url))
      local migrated = conn:query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")[1].present
      return res, migrated
    end

    it("stops at a problem, before migrating anything", function()
      local res, migrated = release({ ["scripts/tenants/acme.lua"] = "return {}" })
      assert.equal(1, res.code)
      assert.truthy(res.stderr:find("scripts/tenants/acme.lua: never read", 1, true), res.stderr)
      assert.is_false(migrated)
    end)

    it("migrates a project that checks", function()
      local res, migrated = release({})
      assert.equal(0, res.code, res.stderr)
      assert.is_true(migrated)
    end)
  end)
end)
