-- mc.env reads the process environment, which a spec cannot change in its own
-- process (setenv is not thread-safe), so each case runs in a fresh binary.
local proc = require "support.process"
local json = require "mc.json"

-- eval(expr, env) -> ok, value_or_error: expr is evaluated with `env` = mc.env.
local dir, cleanup
local function eval(expr, vars)
  local script = proc.write(dir .. "/eval.lua", string.format([[
    local env = require "mc.env"
    local ok, v = pcall(function() return %s end)
    print(mc.json.encode({ ok = ok, v = v == nil and mc.null or v }))
  ]], expr))
  local r = proc.mc({ "run", script }, { env = vars })
  assert.equal(0, r.code, r.stderr)
  local out = assert(json.decode(r.stdout))
  return out.ok, out.v
end

describe("mc.env", function()
  setup(function() dir, cleanup = proc.tmpdir() end)
  teardown(function() cleanup() end)

  it("reads integers with defaults and ranges", function()
    assert.same({ true, 8080 }, { eval('env.int("PORT", 5000)', { PORT = "8080" }) })
    assert.same({ true, 5000 }, { eval('env.int("PORT", 5000)', { PORT = false }) })
    assert.same({ true, 5000 }, { eval('env.int("PORT", 5000)', { PORT = "" }) })
    local ok, err = eval('env.int("PORT", 5000)', { PORT = "12.5" })
    assert.is_false(ok)
    assert.matches('PORT: expected an integer, got "12.5"', err, 1, true)
    ok, err = eval('env.int("WEB_THREADS", 4, { min = 1, max = 64 })', { WEB_THREADS = "0" })
    assert.is_false(ok)
    assert.matches("WEB_THREADS: expected an integer in 1..64, got \"0\"", err, 1, true)
  end)

  it("raises when a required variable is missing", function()
    local ok, err = eval('env.str("CALLBACK_SECRET")', { CALLBACK_SECRET = false })
    assert.is_false(ok)
    assert.matches("CALLBACK_SECRET is required but not set", err, 1, true)
  end)

  it("reads numbers, booleans, enums and lists", function()
    assert.same({ true, 2.5 }, { eval('env.number("RATE", 1)', { RATE = "2.5" }) })
    assert.is_false((eval('env.number("RATE", 1)', { RATE = "nan" })))
    assert.same({ true, true }, { eval('env.bool("MC_RELOAD", false)', { MC_RELOAD = "yes" }) })
    assert.same({ true, false }, { eval('env.bool("MC_RELOAD", true)', { MC_RELOAD = "0" }) })
    local ok, err = eval('env.bool("MC_RELOAD", true)', { MC_RELOAD = "maybe" })
    assert.is_false(ok)
    assert.matches("MC_RELOAD: expected a boolean", err, 1, true)
    assert.same({ true, "sandbox" },
      { eval('env.enum("MODE", {"production", "sandbox"}, "production")', { MODE = "sandbox" }) })
    ok, err = eval('env.enum("MODE", {"production", "sandbox"}, "production")', { MODE = "prod" })
    assert.is_false(ok)
    assert.matches("MODE: expected one of production, sandbox", err, 1, true)
    assert.same({ true, { "critical:3", "default:1" } },
      { eval('env.list("WORKER_QUEUES")', { WORKER_QUEUES = " critical:3, default:1 ," }) })
  end)

  it("validates URLs and schemes", function()
    local ok, v = eval('env.url("DATABASE_URL")', { DATABASE_URL = "postgres://u@h:5432/db" })
    assert.is_true(ok)
    assert.equal("postgres://u@h:5432/db", v)
    local err
    ok, err = eval('env.url("REDIS_URL", nil, { schemes = { "redis", "rediss" } })',
      { REDIS_URL = "http://h:6379" })
    assert.is_false(ok)
    assert.matches("REDIS_URL: expected a redis/rediss URL", err, 1, true)
    ok, err = eval('env.url("BASE_URL")', { BASE_URL = "not a url" })
    assert.is_false(ok)
    assert.matches("BASE_URL: expected a URL", err, 1, true)
  end)

  it("never echoes a secret in its errors", function()
    local ok, err = eval('env.int("API_SECRET")', { API_SECRET = "s3cr3t" })
    assert.is_false(ok)
    assert.matches("API_SECRET: expected an integer, got [FILTERED]", err, 1, true)
    ok, err = eval('env.url("DATABASE_URL", nil, { schemes = { "postgres" } })',
      { DATABASE_URL = "mysql://u:hunter2@h/db" })
    assert.is_false(ok)
    assert.is_nil(err:find("hunter2", 1, true))
  end)
end)
