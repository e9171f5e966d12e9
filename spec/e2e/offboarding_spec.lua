-- Offboarding end to end: web, worker and the sandbox as separate processes. An
-- uninstall pauses the org's connection, removes its add-on and archives its
-- schema with its rows; the export writes the archive with pg_dump; a reinstall
-- within retention restores the rows; an operator's offboard does what an
-- uninstall does; the prune drops an archive past its retention. Redis dbs 23
-- (app) and 24 (sandbox); database mc_offboarding.
local stack = require "support.stack"
local proc = require "support.process"
local json = require "mc.json"
local http = require "mc.http"

local ACME = { org_id = "00D5e000000AbCdEAK", org_name = "Acme", admin_email = "admin@acme.example" }
local SCHEMA = "salesforce00d5e000000abcdeak"
local KEPT = "001KEPT000000001AA"

describe("offboarding end to end", function()
  local s

  setup(function() s = stack.start({ name = "offboarding", app_db = 23, sandbox_db = 24 }) end)
  teardown(function() if s then s:stop() end end)

  local function uninstall()
    local body = json.encode({ org_id = ACME.org_id })
    return assert(http.request({ method = "DELETE", url = s.web_url .. "/organizations/" .. ACME.org_id,
      body = body, headers = stack.sign(body) }))
  end

  local function schema_exists(name)
    return #assert(s.pg:query("SELECT 1 FROM pg_namespace WHERE nspname = $1", name)) == 1
  end

  local function live_archive()
    return assert(s.pg:query([[SELECT * FROM tenant_archives WHERE org_id = $1
      AND restored_at IS NULL AND dropped_at IS NULL]], ACME.org_id))[1]
  end

  local function connection()
    local org = assert(s.pg:query("SELECT connection_id FROM organizations WHERE org_id = $1", ACME.org_id))[1]
    return s:sandbox_state()["sandbox:connect:conn:" .. org.connection_id]
  end

  local function wait_archived()
    assert(proc.wait_for(function() return live_archive() ~= nil end, 30, "the schema archived"), s:logs())
    return live_archive()
  end

  it("an uninstall pauses, removes and archives; a reinstall within retention restores the rows", function()
    assert.equal(202, s:post_install(ACME).status)
    assert(s:wait_state(ACME.org_id, "active", 90), s:logs())
    assert(s.pg:query("INSERT INTO " .. SCHEMA .. ".account (sfid, name) VALUES ($1, 'Kept through offboarding')",
      KEPT))
    local res = uninstall()
    assert.equal(202, res.status, res.body)
    local archive = wait_archived()
    assert.is_false(schema_exists(SCHEMA))
    assert.is_true(schema_exists(archive.archive_name))
    assert.equal(SCHEMA .. "_archived_" .. os.date("!%Y%m%d"), archive.archive_name)
    assert.equal(1, #assert(s.pg:query("SELECT 1 FROM " .. archive.archive_name .. ".account WHERE sfid = $1", KEPT)))
    assert.is_true(connection().sandbox_paused)
    assert.same({}, s:addons_of(ACME.org_id))
    -- an export, as an operator runs it before the retention ends
    local dir, cleanup = proc.tmpdir()
    local r = proc.mc({ "run", "offboarding.export", ACME.org_id, dir .. "/acme.sql" }, { env = s.env })
    local f = io.open(dir .. "/acme.sql")
    local dump = f and f:read("a") or ""
    if f then f:close() end
    cleanup()
    assert.equal(0, r.code, r.stderr)
    assert.matches(KEPT, dump, 1, true)
    -- the reinstall: the archive comes back under the tenant's name, its rows with it
    assert.equal(202, s:post_install(ACME).status)
    assert(s:wait_state(ACME.org_id, "active", 90), s:logs())
    assert.is_true(schema_exists(SCHEMA))
    assert.is_false(schema_exists(archive.archive_name))
    local rows = assert(s.pg:query("SELECT name FROM " .. SCHEMA .. ".account WHERE sfid = $1", KEPT))
    assert.equal("Kept through offboarding", rows[1].name)
    assert.is_nil(live_archive())
    assert.equal(1, #s:addons_of(ACME.org_id)) -- a new add-on, the old one gone
  end)

  it("an operator's offboard does the same; the prune drops the archive past retention", function()
    assert(s:wait_state(ACME.org_id, "active", 30))
    local res = assert(http.post(s.web_url .. "/organizations/" .. ACME.org_id .. "/offboard",
      { headers = { Authorization = "Bearer " .. stack.ADMIN_TOKEN } }))
    assert.equal(202, res.status, res.body)
    local archive = wait_archived()
    assert.same({}, s:addons_of(ACME.org_id))
    local org = assert(s:get_org(ACME.org_id))
    assert.equal("offboarded", org.state)
    local asked
    for _, e in ipairs(org.events) do
      if e.kind == "request" and e.to_state == "offboarded" and e.from_state == "active" then asked = e.details end
    end
    assert.equal("http", asked and asked.offboarded_by)
    assert(s.pg:query("UPDATE tenant_archives SET drop_after = now() WHERE id = $1", archive.id))
    local r = proc.mc({ "run", "jobs:archives.prune" }, { env = s.env })
    assert.equal(0, r.code, r.stderr)
    assert.is_false(schema_exists(archive.archive_name))
    assert.is_nil(live_archive())
    -- and without an operator's token: refused
    res = assert(http.post(s.web_url .. "/organizations/" .. ACME.org_id .. "/offboard", {}))
    assert.equal(401, res.status)
  end)
end)
