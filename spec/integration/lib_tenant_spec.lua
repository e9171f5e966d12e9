-- lib.tenant, on a private migrated database: the tenant's view of an org row (no
-- tokens, sealed or not) and active(), which answers it only for an active org
-- with a schema.
local tenant = require "lib.tenant"
local tenant_db = require "support.tenant_db"

local ORG = "00D5e000000TeNtEAK"
local NOBODY = "00D5e000000OtHrEAK"

describe("lib.tenant", function()
  local tdb
  setup(function() tdb = tenant_db.create("mc_spec_lib_tenant") end)
  teardown(function() tdb:drop() end)
  before_each(function() assert(tdb.conn:exec("DELETE FROM organizations")) end)

  local function org(fields)
    tdb:org(ORG, fields)
    assert(tdb.conn:query([[UPDATE organizations SET access_token = 'sealed-access', refresh_token = 'sealed-refresh',
      connection_id = 'conn-1', package_version = '1.4', progress = '{"failures": 2}' WHERE org_id = $1]], ORG))
  end

  it("view: the tenant's fields of a row, never its tokens or onboarding bookkeeping", function()
    org({ state = "active", schema_name = "salesforce00d5e000000tenteak" })
    local row = assert(tdb.conn:query("SELECT * FROM organizations WHERE org_id = $1", ORG))[1]
    local v = tenant.view(row)
    assert.same({ ORG, "Acme", "active", "salesforce00d5e000000tenteak", "conn-1", "1.4" },
      { v.org_id, v.org_name, v.state, v.schema_name, v.connection_id, v.package_version })
    for _, hidden in ipairs({ "access_token", "refresh_token", "progress", "id", "attempts", "next_attempt_at",
      "sf_user_id", "instance_url", "authorize_url" }) do
      assert.is_nil(v[hidden], hidden)
    end
    assert.equal("string", type(v.created_at))
  end)

  it("active: the view of an active org with a schema", function()
    org({ state = "active", schema_name = "salesforce00d5e000000tenteak" })
    local v = assert(tenant.active(tdb.conn, ORG))
    assert.same({ ORG, "active", "salesforce00d5e000000tenteak" }, { v.org_id, v.state, v.schema_name })
    assert.is_nil(v.access_token)
  end)

  it("active: false for an active org without a schema, an org still onboarding or gone, no such org", function()
    org({ state = "active" })
    assert.is_false(tenant.active(tdb.conn, ORG))
    for _, state in ipairs({ "mappings_imported", "failed", "offboarded" }) do
      org({ state = state, schema_name = "salesforce00d5e000000tenteak" })
      assert.is_false(tenant.active(tdb.conn, ORG), state)
    end
    assert.is_false(tenant.active(tdb.conn, NOBODY))
  end)

  it("active: nil, err when the database fails", function()
    local pg = require "mc.pg"
    local closed = assert(pg.connect(tdb.url))
    closed:close()
    assert.same({ nil, "closed" }, { tenant.active(closed, ORG) })
  end)
end)
