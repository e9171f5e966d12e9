-- offboarding.archives and jobs.archives.prune in-process, on a private
-- database: an offboarded tenant's schema is renamed and recorded in one
-- transaction, found again by a second run, restored by a reinstall within
-- ARCHIVE_DAYS, dropped past it; the export's pg_dump writes the archive alone.
-- Database mc_spec_archives, Redis 25.
local log = require "mc.log"
local proc = require "support.process"
local fixture = require "support.onboarding_fixture"
local archives = require "offboarding.archives"
local orgs = require "onboarding.orgs"
local prune = require "jobs.archives.prune"

local ORG = "00D5e000000AbCdEAK"
local SCHEMA = "salesforce00d5e000000abcdeak"

describe("offboarding.archives", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_archives", redis = 25, env = { ARCHIVE_DAYS = "30" } })
  local ctx = { log = log.with({ job = "spec" }) }

  local function schemas()
    local out = {}
    for _, r in ipairs(assert(fx.other:query([[SELECT nspname FROM pg_namespace WHERE nspname LIKE 'salesforce%'
      ORDER BY nspname]]))) do out[#out + 1] = r.nspname end
    return out
  end

  local function tenant(state)
    assert(fx.conn:exec("DROP SCHEMA IF EXISTS " .. SCHEMA .. " CASCADE"))
    fx.tdb:tenant(SCHEMA)
    assert(fx.conn:query("INSERT INTO " .. SCHEMA .. ".account (sfid, name) VALUES ('001000000000001AAA', 'Kept')"))
    return fx:org(ORG, { state = state or "offboarded", schema_name = SCHEMA })
  end

  after_each(function()
    for _, s in ipairs(schemas()) do assert(fx.conn:exec("DROP SCHEMA " .. s .. " CASCADE")) end
  end)

  it("names an archive after the schema and the day, within Postgres's 63 bytes", function()
    assert.equal(SCHEMA .. "_archived_20261206", archives.archive_name(SCHEMA, 1796597343))
    local long = string.rep("s", 63)
    local name = archives.archive_name(long, 1796597343)
    assert.equal(63, #name)
    assert.matches("_archived_20261206$", name)
  end)

  it("archives an offboarded tenant's schema with its rows, once, with its retention", function()
    tenant()
    local a = assert(archives.archive(fx.conn, ORG))
    local name = archives.archive_name(SCHEMA, os.time())
    assert.equal(name, a.archive_name)
    assert.same({ name }, schemas())
    assert.equal("Kept", assert(fx.other:query("SELECT name FROM " .. name .. ".account"))[1].name)
    local days = assert(fx.other:query([[SELECT round(extract(epoch FROM drop_after - archived_at) / 86400) AS d
      FROM tenant_archives WHERE org_id = $1]], ORG))[1].d
    assert.equal(30, tonumber(days))
    -- a second run (a retried job) finds it
    local again = assert(archives.archive(fx.conn, ORG))
    assert.equal(a.id, again.id)
    assert.equal(1, #assert(fx.other:query("SELECT * FROM tenant_archives")))
  end)

  it("archives nothing for an org not offboarded, or with no schema", function()
    tenant("active")
    assert.is_false(archives.archive(fx.conn, ORG))
    assert.same({ SCHEMA }, schemas())
    assert(fx.conn:exec("DELETE FROM organizations"))
    fx:org(ORG, { state = "offboarded", schema_name = "salesforce_never_made" })
    assert.is_false(archives.archive(fx.conn, ORG))
  end)

  it("restores the archive for a reinstall within retention, and not after it", function()
    tenant()
    local a = assert(archives.archive(fx.conn, ORG))
    assert.is_false(archives.restore(fx.conn, ORG)) -- still offboarded: no reinstall to restore for
    assert(orgs.transition(fx.conn, ORG, "received", "package", { from = "offboarded" }))
    local r = assert(archives.restore(fx.conn, ORG))
    assert.equal(a.id, r.id)
    assert.are_not.equal(mc.null, r.restored_at)
    assert.same({ SCHEMA }, schemas())
    assert.equal("Kept", assert(fx.other:query("SELECT name FROM " .. SCHEMA .. ".account"))[1].name)
    assert.is_false(archives.restore(fx.conn, ORG)) -- done already
    -- offboarded again, reinstalled past the retention: it starts empty
    assert(orgs.transition(fx.conn, ORG, "offboarded", "package"))
    a = assert(archives.archive(fx.conn, ORG))
    assert(fx.conn:query("UPDATE tenant_archives SET drop_after = now() - interval '1 second' WHERE id = $1", a.id))
    assert(orgs.transition(fx.conn, ORG, "received", "package", { from = "offboarded" }))
    assert.is_false(archives.restore(fx.conn, ORG))
    assert.same({ a.archive_name }, schemas())
  end)

  it("drops archives past retention only, each once", function()
    tenant()
    local a = assert(archives.archive(fx.conn, ORG))
    local _, ok = fixture.logged(prune.perform, {}, ctx)
    assert.is_true(ok)
    assert.same({ a.archive_name }, schemas()) -- not due
    assert(fx.conn:query("UPDATE tenant_archives SET drop_after = now() - interval '1 second'"))
    local out
    out, ok = fixture.logged(prune.perform, {}, ctx)
    assert.is_true(ok)
    assert.matches('msg="archived schema dropped"', out, 1, true)
    assert.same({}, schemas())
    local row = assert(fx.other:query("SELECT dropped_at FROM tenant_archives"))[1]
    assert.are_not.equal(mc.null, row.dropped_at)
    assert.is_false(archives.live(fx.conn, ORG))
    out = fixture.logged(prune.perform, {}, ctx)
    assert.is_nil(out:find("dropped", 1, true))
  end)

  it("exports the archive alone with pg_dump", function()
    tenant()
    local a = assert(archives.archive(fx.conn, ORG))
    local dir, cleanup = proc.tmpdir()
    local file = dir .. "/export.sql"
    local r = proc.mc({ "run", "offboarding.export", ORG, file }, { env = { DATABASE_URL = fx.tdb.url } })
    local dump = io.open(file) and io.open(file):read("a") or ""
    cleanup()
    assert.equal(0, r.code, r.stderr)
    assert.matches("exported " .. a.archive_name, r.stdout, 1, true)
    assert.matches("CREATE TABLE " .. a.archive_name .. ".account", dump, 1, true)
    assert.matches("001000000000001AAA\t", dump, 1, true)
    assert.is_nil(dump:find("organizations", 1, true)) -- the app's own tables stay out
    r = proc.mc({ "run", "offboarding.export", "00D5e000000GlBxEAK" }, { env = { DATABASE_URL = fx.tdb.url } })
    assert.equal(1, r.code)
    assert.matches("has no archived schema", r.stderr, 1, true)
  end)
end)
