-- config (scripts/config.lua): every variable the application reads, its
-- default and its check; check(process) names every problem at once.
local config = require "config"
local env_vars = require "support.env_vars"
local host = require "mc.host"

-- what `web` needs, all set and well formed
local GOOD = {
  APP_URL = "https://isv.example/", ENCRYPTION_KEYS = "k1:AAAA", DATABASE_URL = "postgres://u@127.0.0.1:5/db",
  REDIS_URL = "redis://127.0.0.1:6/0", SALESFORCE_CLIENT_ID = "id", SALESFORCE_CLIENT_SECRET = "secret",
  HEROKU_API_TOKEN = "t", HEROKU_APP_NAME = "isv", ADMIN_TOKEN = "0123456789abcdef",
}

describe("config", function()
  local vars = env_vars.layered(GOOD)
  after_each(function() vars:restore() end)

  it("passes a complete configuration for every process", function()
    vars:set({})
    for _, process in ipairs({ "web", "worker", "clock" }) do
      assert.same({ true }, { config.check(process) })
    end
  end)

  it("names every missing and every malformed variable in one answer", function()
    vars:set({ APP_URL = false, HEROKU_APP_NAME = false, ENCRYPTION_KEYS = false, ADMIN_TOKEN = "short-secret",
      CALLBACK_TOLERANCE = "soon", SALESFORCE_LOGIN_URL = "ftp://login.example", CALLBACK_SIGNATURES = "maybe" })
    local ok, problems = config.check("web")
    assert.is_nil(ok)
    local text = table.concat(problems, "\n")
    assert.matches("APP_URL is required but not set", text, 1, true)
    assert.matches("ENCRYPTION_KEYS is required but not set", text, 1, true)
    assert.matches("ADMIN_TOKEN: expected at least 16 characters, got 12", text, 1, true)
    assert.matches("CALLBACK_TOLERANCE: expected", text, 1, true)
    assert.matches("SALESFORCE_LOGIN_URL: expected a http/https URL", text, 1, true)
    assert.matches("CALLBACK_SIGNATURES: expected one of on, off, got ", text, 1, true)
    assert.is_nil(text:find("short-secret", 1, true)) -- secrets are never echoed
    assert.is_nil(text:find("%.lua:%d+:")) -- no source positions in an operator's message
    assert.equal(6, #problems)
  end)

  it("knows the tenants' databases: CONNECT_DB_KEY, then TENANT_DATABASES, each set to a Postgres URL", function()
    vars:set({ TENANT_DATABASES = "RED_URL, BLUE_URL,RED_URL", RED_URL = "postgres://u@red:5/db", BLUE_URL = false })
    assert.same({ "DATABASE_URL", "RED_URL", "BLUE_URL" }, config.database_keys())
    assert.equal("postgres://u@red:5/db", config.database_url("RED_URL"))
    assert.equal(GOOD.DATABASE_URL, config.database_url("DATABASE_URL"))
    assert.same({ nil, "GREEN_URL is not one of CONNECT_DB_KEY, TENANT_DATABASES" },
      { config.database_url("GREEN_URL") })
    local ok, problems = config.check("worker")
    assert.is_nil(ok)
    assert.same({ "BLUE_URL is required but not set (named by CONNECT_DB_KEY or TENANT_DATABASES)" }, problems)
    vars:set({ TENANT_DATABASES = "RED_URL", RED_URL = "mysql://red/db" })
    ok, problems = config.check("web")
    assert.is_nil(ok)
    assert.matches("RED_URL: expected a postgres/postgresql URL", problems[1], 1, true)
    assert.same({ true }, { config.check("clock") }) -- the clock touches no tenant's database
  end)

  it("requires per process: the worker needs the Heroku token, web the connected app", function()
    vars:set({ HEROKU_API_TOKEN = false, SALESFORCE_CLIENT_SECRET = false })
    local _, web = config.check("web")
    local _, worker = config.check("worker")
    assert.same({ "SALESFORCE_CLIENT_SECRET" }, { web[1]:match("^(%S+) is required") })
    assert.equal(1, #web)
    assert.equal(1, #worker)
    assert.matches("^HEROKU_API_TOKEN is required", worker[1])
    assert.same({ true }, { config.check("clock") })
  end)

  it("gives defaults, derived defaults, and nil for an optional unset variable", function()
    vars:set({ APP_URL = false, HEROKU_APP_NAME = "isv-prod", TENANTS_DIR = false, FORCE_NAMESPACE = false })
    assert.equal(300, config.get("CALLBACK_TOLERANCE"))
    assert.equal("https://isv-prod.herokuapp.com", config.app_url())
    assert.equal(host.root .. "/scripts/tenants", config.get("TENANTS_DIR"))
    assert.is_nil(config.get("FORCE_NAMESPACE"))
    assert.same({ "my.salesforce.com" }, config.get("SALESFORCE_LOGIN_DOMAINS"))
  end)

  it("strips the app URL's trailing slash; need() raises for an unset variable", function()
    vars:set({})
    assert.equal("https://isv.example", config.app_url())
    vars:set({ APP_URL = false, HEROKU_APP_NAME = false })
    assert.has_error(function() config.app_url() end, "APP_URL is required but not set")
    assert.has_error(function() config.need("X_BEARER_TOKEN") end, "X_BEARER_TOKEN is required but not set")
  end)

  it("raises for a name it does not declare (every read goes through the table)", function()
    assert.has_error(function() config.get("NOT_A_VARIABLE") end)
  end)

  it("declares every variable the application's scripts read", function()
    -- a read of a name config.lua does not declare would raise at run time;
    -- find every config.get/need in scripts/ and check the table has it
    local list = assert(io.popen("cd '" .. host.root
      .. "' && grep -rhoE 'config\\.(get|need)\\(\"[A-Z_0-9]+\"' scripts"))
    local seen = 0
    for line in list:lines() do
      local name = line:match('"([A-Z_0-9]+)"')
      assert.truthy(config.VARS[name], name .. " is read but not declared")
      seen = seen + 1
    end
    list:close()
    assert.is_true(seen > 30)
    -- and no script reads the environment behind the table's back
    local stray = assert(io.popen("cd '" .. host.root
      .. "' && grep -rlE 'os\\.getenv|require \"mc\\.env\"' scripts | grep -v '^scripts/config.lua$'"))
    assert.equal("", stray:read("a"))
    stray:close()
  end)
end)
