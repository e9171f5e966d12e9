-- spec/support/isv.lua, the helpers an ISV's specs use (the generated tenant and
-- job specs of `multiconnect new` use the rest): a database holding the org and
-- its schema, a settable clock, jobs run inline on that database.
local isv = require "support.isv"
local host = require "mc.host"
local jobs = require "mc.jobs"
local conns = require "mc.conns"

local ORG = "00D5g000004XyzAEAS"

describe("support.isv", function()
  it("puts the org, active, and its schema's tables in a private migrated database", function()
    local before = assert(conns.pg())
    do
      local db <close> = isv.database("mc_spec_isv")
      local t = isv.tenant(ORG):insert(db)
      assert.equal("salesforce" .. ORG:lower(), t.row.schema_name)
      local row = assert(db.conn:query("SELECT state, schema_name FROM organizations WHERE org_id = $1", ORG))[1]
      assert.same({ state = "active", schema_name = t.row.schema_name },
        { state = row.state, schema_name = row.schema_name })
      local tables = assert(db.conn:query(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1",
        t.row.schema_name))
      assert.is_true(tables[1].n >= 2)
      assert.equal(db.conn, conns.pg())
      assert.is_true(isv.job("social.tenant", { ORG }, db)) -- no account has a handle: nothing to fetch
    end
    assert.equal(before, conns.pg())
  end)

  it("fails a job the way the worker would see it", function()
    local ok, err = isv.job("onboarding.advance", { 42 })
    assert.is_nil(ok)
    assert.equal("onboarding.advance: expected an org id", err)
  end)

  it("sets the clock that mc.host.time, os.time and mc.jobs read, and gives it back", function()
    do
      local clock <close> = isv.clock(1700000000)
      assert.equal(1700000000, host.time())
      assert.equal(1700000000, os.time())
      assert.equal(1700000000, jobs.now())
      clock:advance(90)
      assert.equal(1700000090, jobs.now())
    end
    assert.is_true(math.abs(host.time() - os.time()) < 2)
    assert.is_true(host.time() > 1700000090 + 86400)
  end)
end)
