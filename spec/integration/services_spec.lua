-- The throwaway servers `make test` provides (tools/services) answer on the
-- URLs it exported.
local proc = require "support.process"

describe("local services", function()
  it("exports a DATABASE_URL where Postgres answers", function()
    local url = assert(os.getenv("DATABASE_URL"), "DATABASE_URL is set by make test")
    local r = proc.run({ "psql", url, "-tAc", "select 40 + 2" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("42\n", r.stdout)
  end)

  it("exports a REDIS_URL where Redis answers", function()
    local url = assert(os.getenv("REDIS_URL"), "REDIS_URL is set by make test")
    local r = proc.run({ "redis-cli", "-u", url, "info", "server" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("redis_version:%d+%.", r.stdout)
  end)

end)
