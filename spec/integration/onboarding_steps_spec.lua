-- onboarding.steps against the project's sandbox (Heroku, Connect, SendGrid),
-- each step called directly with the org's row as the workflow hands it over,
-- and its whole answer compared: steps.done(...) {to, fields, details},
-- steps.wait(...) {wait, fields}, or nil, err, retryable. The org reaches the
-- state a step needs through workflow.advance (the earlier real steps) or, for
-- the states a person's browser reaches, by hand (the spec's fixture).
local http = require "mc.http"
local host = require "mc.host"
local file = require "mc.file"
local sfid = require "lib.sfid"
local orgs = require "onboarding.orgs"
local steps = require "onboarding.steps"
local workflow = require "onboarding.workflow"
local proc = require "support.process"
local fixture = require "support.onboarding_fixture"

local ORG = sfid.to18("00D5e000000StEp")
local OTHER = sfid.to18("00D5e000000OthR")
local SCHEMA = "salesforce" .. ORG:lower()
local ADDON = "mc-spec-hc-" .. ORG:lower()

describe("onboarding.steps", function()
  local env = {}
  local fx = fixture.new(_ENV, { db = "mc_spec_steps", redis = 14, sandbox = 19, env = env,
    knobs = { heroku = { async = false }, sendgrid = {},
      connect = { auto_approve = true, config_delay = 0, import_delay = 0, sync_delay = 0, postgres = false,
        org_id = ORG } } })
  local dir, cleanup

  setup(function()
    dir, cleanup = proc.tmpdir()
    proc.write(dir .. "/default.lua", assert(file.read(host.root .. "/scripts/tenants/default.lua")))
    env.TENANTS_DIR = dir
  end)
  teardown(function() cleanup() end)
  before_each(function() os.remove(dir .. "/" .. ORG .. ".lua") end)

  local function hook(src) proc.write(dir .. "/" .. ORG .. ".lua", src) end

  -- run(state) -> the step's answer, packed, for the org's row as advance reads it
  local function run(state, conn)
    local org = fx:row(ORG)
    org.tenant = orgs.public(org)
    conn = conn or fx.conn
    return table.pack(steps[state](org, { conn = conn, save = function(f) return orgs.update(conn, ORG, f) end }))
  end

  local function answer(...) return table.pack(...) end

  local function addons() return fx.sb:get("/__sandbox/heroku/addons") end

  -- the org advanced by the real workflow until it is in `state`
  local function reach(state)
    assert(fx.conn:query("DELETE FROM organizations WHERE org_id = $1", ORG))
    fx:org(ORG, { state = "received" })
    for _ = 1, 8 do
      if fx:row(ORG).state == state then return fx:row(ORG) end
      assert(workflow.advance(ORG, { force = true }))
    end
    error("the org did not reach " .. state .. ": " .. fx:row(ORG).state .. " " .. tostring(fx:row(ORG).last_error))
  end

  -- the spec's fixture: a state a person's browser moves an org into
  local function put(state)
    assert(fx.conn:query("UPDATE organizations SET state = $2 WHERE org_id = $1", ORG, state))
  end

  -- the sandbox's record of the org's connection (its pending PATCH, if any)
  local function connection(id)
    return fx.sb:get("/__sandbox/state")["sandbox:connect:conn:" .. id]
  end

  describe("received", function()
    it("done once the add-on is provisioned: the schema, the add-on's name and id", function()
      fx:org(ORG, { state = "received" })
      local got = run("received")
      local addon = addons()[1]
      assert.same({ ADDON, "HEROKUCONNECT_" .. ORG:upper(), "herokuconnect:demo" },
        { addon.name, addon.attachment, addon.plan })
      assert.same(answer({ to = "addon_provisioned", fields = { schema_name = SCHEMA, addon_name = ADDON,
        addon_id = addon.id, db_key = "DATABASE_URL" } }), got)
    end)

    it("places the tenant in the least loaded database, or where its database hook says", function()
      fx.config:set({ TENANT_DATABASES = "SECOND_DATABASE_URL", SECOND_DATABASE_URL = fx.tdb.url })
      fx:org(OTHER, { state = "active", schema_name = "salesforce_other" }) -- db_key NULL: CONNECT_DB_KEY's
      fx:org(ORG, { state = "received" })
      assert.equal("SECOND_DATABASE_URL", run("received")[1].fields.db_key)
      hook("return { database = function(t, choices) return choices[1].key .. '_NOPE' end }")
      local _, err, retry = table.unpack(run("received"), 1, 3)
      assert.same(
        { "tenant hook database gave DATABASE_URL_NOPE, not one of DATABASE_URL, SECOND_DATABASE_URL", false },
        { err, retry })
      hook("return { database = function(t, choices) return choices[1].tenants == 1 and 'DATABASE_URL' end }")
      assert.equal("DATABASE_URL", run("received")[1].fields.db_key)
    end)

    it("waits while the add-on provisions, and finds the same add-on by name the next time", function()
      fx.sb:knobs({ heroku = { async = true, provision_delay = 0.2 } })
      fx:org(ORG, { state = "received" })
      local first = run("received")
      local id = addons()[1].id
      assert.same(answer({ wait = "the add-on is provisioning",
        fields = { schema_name = SCHEMA, addon_name = ADDON, addon_id = id, db_key = "DATABASE_URL" } }), first)
      host.sleep(0.25)
      assert.same(answer({ to = "addon_provisioned",
        fields = { schema_name = SCHEMA, addon_name = ADDON, addon_id = id, db_key = "DATABASE_URL" } }),
        run("received"))
      assert.equal(1, #addons())
    end)

    it("takes the schema from the tenant's hook, and keeps one the row already has without asking", function()
      hook("return { schema_name = function(t) return 'tenant_' .. t.org_name:lower() end }")
      fx:org(ORG, { state = "received" })
      assert.equal("tenant_acme", run("received")[1].fields.schema_name)
      hook("return { schema_name = function() error('not asked') end }")
      assert(fx.conn:exec("DELETE FROM organizations"))
      fx:org(ORG, { state = "received", schema_name = "kept_schema" })
      assert.equal("kept_schema", run("received")[1].fields.schema_name)
    end)

    it("fails for good on a schema name the hook should not give, before any add-on", function()
      local names = { "'public'", "'salesforce'", "'pg_acme'", "'Acme'", "'a-b'", "string.rep('a', 64)", "42" }
      for _, bad in ipairs(names) do
        hook("return { schema_name = function() return " .. bad .. " end }")
        fx:org(ORG, { state = "received" })
        local got = run("received")
        assert.same({ 3, nil, false }, { got.n, got[1], got[3] }, bad)
        assert.matches("^tenant hook schema_name gave .*, not a tenant schema name", got[2])
        assert(fx.conn:exec("DELETE FROM organizations"))
      end
      assert.same({}, addons())
    end)

    it("fails for good when the hook raises", function()
      hook("return {\n  schema_name = function() error('no schema for you') end,\n}\n")
      fx:org(ORG, { state = "received" })
      assert.same(answer(nil, "tenant hook schema_name (" .. dir .. "/" .. ORG .. ".lua): " .. dir .. "/" .. ORG
        .. ".lua:2: no schema for you", false), run("received"))
      assert.same({}, addons())
    end)

    it("fails for good when another org holds the schema", function()
      fx:org(OTHER, { state = "active", schema_name = SCHEMA })
      fx:org(ORG, { state = "received" })
      assert.same(answer(nil, "schema " .. SCHEMA .. " already belongs to org " .. OTHER, false), run("received"))
      assert.same({}, addons())
    end)

    it("a database failure (the archive's look-up, first), and Heroku's 5xx, are retryable; its 401 is not", function()
      fx:org(ORG, { state = "received" })
      assert.same(answer(nil, "restoring the archived schema: closed", true), run("received", fx:closed()))
      fx.sb:knobs({ heroku = { fail_next = 1, fail_status = 503 } })
      assert.same(answer(nil, "heroku: HTTP 503 service_unavailable: The sandbox injected this failure.", true),
        run("received"))
      fx.sb:knobs({ heroku = { token = "someone-else" } })
      assert.same(answer(nil, "heroku: HTTP 401 unauthorized: Invalid credentials provided.", false), run("received"))
      assert.same({}, addons())
    end)
  end)

  describe("addon_provisioned", function()
    it("waits until Connect lists the add-on, then links our user: done", function()
      fx:org(ORG, { state = "addon_provisioned" })
      assert.same(answer({ wait = "Heroku Connect does not list the add-on yet", fields = {} }),
        run("addon_provisioned"))
      reach("addon_provisioned")
      assert.same(answer({ to = "app_linked", fields = {} }), run("addon_provisioned"))
      fx.sb:knobs({ connect = { fail_next = 1, fail_status = 502 } })
      assert.same(answer(nil, "connect: HTTP 502 The sandbox injected this failure.", true), run("addon_provisioned"))
    end)
  end)

  describe("app_linked", function()
    before_each(function() fx.sb:knobs({ connect = { config_delay = 600 } }) end) -- a PATCH not applied yet

    it("waits while Connect does not list the connection", function()
      fx:org(ORG, { state = "app_linked", addon_name = ADDON, schema_name = SCHEMA })
      assert.same(answer({ wait = "Heroku Connect does not list the connection yet", fields = {} }), run("app_linked"))
    end)

    it("PATCHes the schema and database once, notes when, and again only after ten minutes", function()
      reach("app_linked")
      local first = run("app_linked")
      local fields = first[1].fields
      assert.is_string(fields.connection_id)
      assert.matches("^http://127%.0%.0%.1:%d+/connect$", fields.region_url)
      assert.is_true(math.abs(fields.progress.patched_at - os.time()) <= 2)
      assert.same(answer({ wait = "Heroku Connect has not applied the schema and database yet", fields = {
        connection_id = fields.connection_id, region_url = fields.region_url, progress = fields.progress } }), first)
      local pending = connection(fields.connection_id).sandbox_pending
      assert.same({ SCHEMA, "DATABASE_URL" }, { pending.schema_name, pending.db_key })
      -- as the workflow saves it
      assert(orgs.update(fx.conn, ORG, fields))
      assert.same(answer({ wait = "Heroku Connect has not applied the schema and database yet", fields = {
        connection_id = fields.connection_id, region_url = fields.region_url } }), run("app_linked"))
      assert.equal(pending.at, connection(fields.connection_id).sandbox_pending.at) -- no second PATCH
      assert(orgs.update(fx.conn, ORG, { progress = { patched_at = os.time() - 601 } }))
      host.sleep(0.01)
      local again = run("app_linked")
      assert.is_true(math.abs(again[1].fields.progress.patched_at - os.time()) <= 2)
      assert.is_true(connection(fields.connection_id).sandbox_pending.at > pending.at) -- sent again
    end)

    it("done once Connect shows the schema and database", function()
      fx.sb:knobs({ connect = { config_delay = 0 } })
      reach("app_linked")
      local fields = run("app_linked")[1].fields -- the PATCH, applied at once
      assert(orgs.update(fx.conn, ORG, fields))
      assert.same(answer({ to = "connection_configured", fields = { connection_id = fields.connection_id,
        region_url = fields.region_url } }), run("app_linked"))
    end)

    it("a PATCH Connect refuses fails for good", function()
      fx.config:set({ CONNECT_DB_KEY = "OTHER_DATABASE_URL" })
      reach("app_linked")
      assert.same(answer(nil, "connect: HTTP 400 db_key must name a Heroku Postgres config var of the app", false),
        run("app_linked"))
    end)
  end)

  describe("connection_configured", function()
    it("done with Connect's authorize URL for the admin", function()
      local org = reach("connection_configured")
      local got = run("connection_configured")
      assert.matches("^" .. fx.sb.url:gsub("%p", "%%%0") .. "/connect/sandbox/authorize/[%w_-]+$",
        got[1].fields.authorize_url)
      assert.same(answer({ to = "authorize_url_ready", fields = { authorize_url = got[1].fields.authorize_url } }), got)
      assert.is_string(org.connection_id)
    end)
  end)

  describe("connect_authorized", function()
    -- the org with its connection, the admin having approved Connect (or not)
    local function authorized(approve)
      local org = reach("authorize_url_ready")
      if approve then
        local res = assert(http.get(org.authorize_url))
        assert.equal(302, res.status, res.body)
      end
      put("connect_authorized")
    end

    it("waits until Connect shows a Salesforce authorization", function()
      authorized(false)
      assert.same(answer({ wait = "Heroku Connect shows no Salesforce authorization yet", fields = {} }),
        run("connect_authorized"))
    end)

    it("fails for good when Connect was authorized with another org", function()
      fx.sb:knobs({ connect = { org_id = OTHER } })
      authorized(true)
      assert.same(answer(nil, "Heroku Connect was authorized with org " .. OTHER .. ", not " .. ORG, false),
        run("connect_authorized"))
    end)

    it("imports the tenant's mapping: done with how many", function()
      authorized(true)
      assert.same(answer({ to = "mappings_imported", fields = {}, details = { mappings = 4 } }),
        run("connect_authorized"))
    end)

    it("fails for good on a mapping that does not validate, or a mapping hook that raises", function()
      authorized(true)
      hook("return { mapping = function(_, base) base.mappings[1].config.access = 'sometimes'; return base end }")
      local got = run("connect_authorized")
      assert.same({ 3, nil, false }, { got.n, got[1], got[3] })
      assert.matches("^invalid mapping: .*access", got[2])
      hook("return { mapping = function() error('no mapping') end }")
      got = run("connect_authorized")
      assert.same({ 3, nil, false }, { got.n, got[1], got[3] })
      assert.matches("no mapping$", got[2])
    end)
  end)

  describe("mappings_imported", function()
    -- the tenant's mapping imported (by the real step), the org moved on by hand
    local function imported(mapping_hook)
      if mapping_hook then hook(mapping_hook) end
      local org = reach("authorize_url_ready")
      assert.equal(302, assert(http.get(org.authorize_url)).status)
      put("connect_authorized")
      assert.equal("mappings_imported", run("connect_authorized")[1].to)
      put("mappings_imported")
    end

    it("waits while the mappings sync", function()
      fx.sb:knobs({ connect = { sync_delay = 600 } })
      imported()
      local got = run("mappings_imported")
      assert.matches("^syncing: Account INITIAL, ", got[1].wait)
      assert.same(answer({ wait = got[1].wait, fields = {} }), got)
    end)

    it("done once every mapping synced: active, with the time, and the admin told", function()
      imported()
      local got = run("mappings_imported")
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", got[1].fields.activated_at)
      assert.same(answer({ to = "active", fields = { activated_at = got[1].fields.activated_at } }), got)
      local box = fx.sb:get("/sendgrid/__mailbox")
      assert.equal(1, #box)
      assert.same({ "onboarding", "active" }, box[1].categories)
    end)

    -- Connect recovers DB_UNAVAILABLE once the database answers; failing the org
    -- for it turned a Postgres restart into a failed onboarding (the chaos spec)
    it("waits while a mapping is DB_UNAVAILABLE", function()
      imported()
      local res = assert(http.post(fx.sb.url .. "/__sandbox/connect/connections/" .. fx:row(ORG).connection_id
        .. "/break", { json = { mapping = "Account", state = "DB_UNAVAILABLE", description = "restarting" } }))
      assert.equal(204, res.status, res.body)
      local got = run("mappings_imported")
      assert.matches("Account DB_UNAVAILABLE", got[1].wait, 1, true)
      assert.same(answer({ wait = got[1].wait, fields = {} }), got)
    end)

    it("fails for good on a mapping Connect reports broken", function()
      imported([[return { mapping = function(_, base)
        base.mappings[#base.mappings + 1] = { object_name = "Widget__c", config = { access = "read_only",
          sf_polling_seconds = 600, sf_notify_enabled = false, sf_max_daily_api_calls = 30000,
          fields = { Id = {}, SystemModstamp = {}, IsDeleted = {} } } }
        return base
      end }]])
      assert.same(answer(nil, "mapping Widget__c is BAD_CONFIG: Object Widget__c does not exist in the organization",
        false), run("mappings_imported"))
    end)
  end)
end)
