-- app.json, heroku.yml and the README's "### Configuration" table against the
-- code: the variables the code reads, the ones app.json declares and the ones
-- the README lists are one set, so a variable added to the code and forgotten
-- in the deploy (or the other way round) fails here.
local config = require "config"
local json = require "mc.json"
local file = require "mc.file"
local host = require "mc.host"
local proc = require "support.process"

local ROOT = host.root
-- Set by Heroku on every dyno, never by the operator.
local PLATFORM = { PORT = true, DYNO = true }
-- Set by the add-ons app.json provisions.
local ADDON_VARS = {
  ["heroku-postgresql"] = { "DATABASE_URL" },
  ["heroku-redis"] = { "REDIS_URL", "REDIS_TLS_URL" },
  scheduler = {},
}
local PLANS = { "heroku-postgresql:essential-0", "heroku-redis:mini", "scheduler:standard" }

local function sorted(set)
  local out = {}
  for k in pairs(set) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function files(dir, pattern)
  local r = proc.run({ "find", ROOT .. "/" .. dir, "-name", pattern, "-type", "f" })
  assert(r.code == 0, r.stderr)
  local out = {}
  for path in r.stdout:gmatch("[^\n]+") do out[#out + 1] = path end
  assert(#out > 0, "no " .. pattern .. " under " .. dir)
  return out
end

-- code_reads() -> set of every variable name the code reads: config's VARS,
-- getenv("NAME") in core/*.c and core/lua, and mc.env's readers env.x("NAME", ...)
local function code_reads()
  local names = {}
  for name in pairs(config.VARS) do names[name] = true end
  for _, path in ipairs(files("core", "*.c")) do
    for n in file.read(path):gmatch('getenv%("([A-Z][A-Z0-9_]*)"%)') do names[n] = true end
  end
  for _, path in ipairs(files("core/lua", "*.lua")) do
    local text = file.read(path)
    for n in text:gmatch('getenv%("([A-Z][A-Z0-9_]*)"%)') do names[n] = true end
    for args in text:gmatch("env%.%a+%(([^)]*)%)") do
      local n = args:match('"([A-Z][A-Z0-9_]*)"')
      if n then names[n] = true end
    end
  end
  return names
end

-- readme() -> set of the names in the Configuration table's first column, set of
-- the local-only names listed under it
local function readme()
  local text = file.read(ROOT .. "/README.md")
  local section = assert(text:match("\n### Configuration\n(.-)\n## "), "README has no ### Configuration")
  local rows = {}
  for line in section:gmatch("[^\n]+") do
    local cell = line:match("^| (`.-) |")
    if cell then
      for n in cell:gmatch("`([A-Z][A-Z0-9_]*)`") do rows[n] = true end
    end
  end
  local sentence = assert(section:match("local%-only variables: (.-)%.\n"), "no local-only sentence")
  local local_only = {}
  for n in sentence:gmatch("`([A-Z][A-Z0-9_]*)`") do local_only[n] = true end
  return rows, local_only
end

local app = json.decode(file.read(ROOT .. "/app.json"))

describe("app.json", function()
  it("has the fields Heroku's app.json schema takes, well formed", function()
    assert.is_string(app.name)
    assert.truthy(#app.name >= 3 and #app.name <= 30, app.name)
    assert.truthy(type(app.description) == "string" and #app.description > 0 and #app.description <= 140)
    assert.matches("^https://github%.com/[%w_.-]+/[%w_.-]+$", app.repository)
    assert.is_table(app.keywords)
    for _, k in ipairs(app.keywords) do assert.is_string(k) end
    assert.is_nil(app.logo)
    assert.equal("container", app.stack) -- built from heroku.yml, so no buildpacks
    assert.is_nil(app.buildpacks)
  end)

  it("describes every variable, says whether it is required, and generates only secrets", function()
    local n = 0
    for name, v in pairs(app.env) do
      n = n + 1
      assert.is_table(v, name)
      assert.truthy(type(v.description) == "string" and #v.description > 10, name)
      -- Heroku takes a missing `required` as true: every entry says which it is
      assert.is_boolean(v.required, name)
      assert.truthy(v.value == nil or type(v.value) == "string", name .. ": a value is a string")
      assert.truthy(v.generator == nil or v.generator == "secret", name .. ": the only generator is secret")
      assert.falsy(v.value and v.generator, name .. ": value or generator, not both")
    end
    assert.truthy(n > 40, n)
    assert.equal("secret", app.env.CALLBACK_SECRET.generator)
    assert.equal("secret", app.env.ADMIN_TOKEN.generator)
    -- a generated secret is 64 hex characters, not kid:base64key
    assert.is_nil(app.env.ENCRYPTION_KEYS.generator)
    assert.is_true(app.env.ENCRYPTION_KEYS.required)
    assert.matches("keys new", app.env.ENCRYPTION_KEYS.description, 1, true)
  end)

  it("requires what a process cannot start without, unless an add-on or a default provides it", function()
    local by_addon = {}
    for _, vars in pairs(ADDON_VARS) do for _, n in ipairs(vars) do by_addon[n] = true end end
    for name, v in pairs(config.VARS) do
      -- APP_URL defaults to https://$HEROKU_APP_NAME.herokuapp.com (config's DERIVED)
      if v.need and v[2] == nil and not by_addon[name] and name ~= "APP_URL" then
        assert.is_true(app.env[name].required, name)
      end
    end
  end)

  it("gives a value only where it is the code's own default or the deploy needs another", function()
    for name, v in pairs(app.env) do
      local var = config.VARS[name]
      if v.value and var and type(var[2]) ~= "table" and var[2] ~= nil then
        assert.equal(tostring(var[2]), v.value, name)
      end
    end
  end)

  it("provisions add-ons with plans that exist today", function()
    local plans = {}
    for _, a in ipairs(app.addons) do
      assert.is_table(a)
      assert.matches("^[%w-]+:[%w-]+$", a.plan)
      assert.is_table(ADDON_VARS[a.plan:match("^[^:]+")], a.plan)
      plans[#plans + 1] = a.plan
    end
    table.sort(plans)
    assert.same(PLANS, plans)
  end)

  it("runs web, worker and clock, the process types heroku.yml and the Procfile declare", function()
    local yml, procfile = file.read(ROOT .. "/heroku.yml"), file.read(ROOT .. "/Procfile")
    assert.same({ "clock", "web", "worker" }, sorted(app.formation))
    for name, f in pairs(app.formation) do
      assert.truthy(math.type(f.quantity) == "integer" and f.quantity >= 1, name)
      assert.is_string(f.size)
      local command = assert(procfile:match("\n?" .. name .. ": ([^\n]+)"), name .. " in the Procfile")
      -- heroku.yml replaces the Procfile on the container stack: the same commands
      assert.truthy(yml:find(name .. ": " .. command, 1, true) or yml:find("- " .. command, 1, true),
        name .. ": " .. command .. " in heroku.yml")
    end
    assert.matches("release: bin/multiconnect release", procfile, 1, true)
    assert.matches("release:%s+image: web%s+command:%s+%- bin/multiconnect release", yml)
    assert.matches("build:%s+docker:%s+web: Dockerfile", yml)
  end)
end)

describe("the configuration's variables", function()
  local code = code_reads()
  local rows, local_only = readme()

  it("are found in the code (the scan itself works)", function()
    for _, n in ipairs({ "PORT", "DYNO", "MC_ROOT", "WEB_THREADS", "REDIS_TLS_VERIFY", "MAIL_FROM", "APP_URL" }) do
      assert.is_true(code[n], n)
    end
  end)

  it("are each in the README's table, or named there as local-only", function()
    local documented = {}
    for n in pairs(rows) do documented[n] = true end
    for n in pairs(local_only) do
      assert.is_nil(rows[n], n .. " is both a row and local-only")
      documented[n] = true
    end
    assert.same(sorted(code), sorted(documented))
  end)

  it("in the README's table are app.json's env, its add-ons' and Heroku's own", function()
    local declared = {}
    for n in pairs(app.env) do declared[n] = true end
    for _, a in ipairs(app.addons) do
      for _, n in ipairs(ADDON_VARS[a.plan:match("^[^:]+")]) do
        assert.is_nil(app.env[n], n .. " is set by an add-on; app.json must not override it")
        declared[n] = true
      end
    end
    for n in pairs(PLATFORM) do
      assert.is_nil(app.env[n], n .. " is set by Heroku")
      declared[n] = true
    end
    assert.same(sorted(rows), sorted(declared))
  end)
end)

describe("the container build", function()
  it("has two debian:12 stages that each run one script, the last holding only the app", function()
    local df = file.read(ROOT .. "/Dockerfile")
    local froms, runs = {}, {}
    for line in df:gmatch("[^\n]+") do
      if line:match("^FROM ") then froms[#froms + 1] = line end
      if line:match("^RUN ") then runs[#runs + 1] = line end
    end
    assert.same({ "FROM debian:12 AS build", "FROM debian:12" }, froms)
    assert.equal(2, #runs)
    assert.matches("^RUN tools/image/build$", runs[1])
    assert.matches("multiconnect%-runtime", runs[2])
    assert.matches("COPY tools/image/runtime ", df, 1, true)
    assert.matches("COPY %-%-from=build /src/build/image/app /app\n", df)
    local build = file.read(ROOT .. "/tools/image/build")
    assert.matches("cp %-R scripts sql mappings ", build)
  end)
end)
