-- The sandbox's Heroku Connect stand-in (hc-central + one regional API), driven
-- through mc.http as the onboarding drives the real one (docs/external-apis.md §1), with its
-- Postgres side checked in the real database.
local sandbox = require "support.sandbox"
local process = require "support.process"
local http = require "mc.http"
local host = require "mc.host"
local crypto = require "mc.crypto"
local pg = require "mc.pg"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local ACCEPT = "application/vnd.heroku+json; version=3"

local MAPPINGS = { version = 1, connection = { organization_id = "00DB00000002NDmMAM", app_name = "other" },
  mappings = {
    { object_name = "Account", config = { access = "read_only", sf_polling_seconds = 600,
      fields = { Id = {}, SystemModstamp = {}, IsDeleted = {}, CreatedDate = {}, Name = {}, Twitter_Handle__c = {} },
      indexes = { Id = { unique = true } } } },
    { object_name = "tweet__c", config = { access = "read_write",
      fields = { Id = {}, SystemModstamp = {}, IsDeleted = {}, Text__c = {}, Account__c = {} } } },
    { object_name = "Opportunity", config = { fields = { Id = {} } } },
    { object_name = "Contact", config = { fields = { Id = {}, Shoe_Size__c = {} } } },
  } }

describe("sandbox: Heroku Connect", function()
  local sb, base, heroku, control, db
  local schemas = {}

  local function call(method, url, opts)
    opts = opts or {}
    local headers = { Authorization = "Bearer " .. (opts.token or "spec-token") }
    if opts.token == false then headers.Authorization = nil end
    return assert(http.request({ method = method, url = url, headers = headers, json = opts.json,
      form = opts.form }))
  end
  local function api(method, path, opts) return call(method, base .. "/api/v3" .. path, opts) end

  local function knobs(doc)
    assert.equal(200, assert(http.post(control .. "/config", { json = doc })).status)
  end

  local function addon(app, plan)
    local res = assert(http.post(heroku .. "/apps/" .. app .. "/addons",
      { json = { plan = plan or "herokuconnect:demo" },
      headers = { Accept = ACCEPT, Authorization = "Bearer spec-token" } }))
    assert.equal(201, res.status)
    return res:json()
  end

  local function wait_state(path, state)
    local last
    local ok = process.wait_for(function()
      last = api("GET", path):json()
      return last.state == state
    end, 10)
    assert.truthy(ok, "state " .. tostring(last and last.state) .. ", wanted " .. state)
    return last
  end

  -- A linked connection, configured (schema spec-owned) and, unless told, authorized.
  local function ready_connection(authorize)
    local a = addon("my-app")
    local conn = call("POST", base .. "/auth/my-app"):json().connections[1]
    local schema = "sb_connect_" .. crypto.to_hex(crypto.random(4))
    schemas[#schemas + 1] = schema
    assert.equal(202, api("PATCH", "/connections/" .. conn.id,
      { json = { schema_name = schema, db_key = "DATABASE_URL" } }).status)
    wait_state("/connections/" .. conn.id, "NEED_AUTHENTICATION")
    if authorize ~= false then
      knobs({ connect = { auto_approve = true } })
      local redirect = api("POST", "/connections/" .. conn.id .. "/authorize_url", { json = {} }):json().redirect
      assert.equal(200, call("GET", redirect).status)
      wait_state("/connections/" .. conn.id, "IDLE")
    end
    return conn, schema, a
  end

  setup(function()
    local url
    sb, url = sandbox.start(7)
    base = url .. "/connect"
    heroku = url .. "/heroku"
    control = url .. "/__sandbox"
    db = assert(pg.connect())
  end)
  teardown(function()
    sb:stop()
    db:close()
  end)
  before_each(function()
    assert.equal(204, assert(http.post(control .. "/reset")).status)
    knobs({ heroku = { async = false }, connect = { config_delay = 0.2, import_delay = 1, sync_delay = 1,
      recovery_delay = 1 } })
  end)
  after_each(function()
    for _, s in ipairs(schemas) do assert(db:exec("DROP SCHEMA IF EXISTS " .. pg.quote_ident(s) .. " CASCADE")) end
    schemas = {}
  end)

  it("links the token's user to the app's Connect add-ons; before that nothing is visible", function()
    assert.equal(404, call("POST", base .. "/auth/my-app").status) -- no add-on yet
    local a = addon("my-app")
    addon("my-app", "heroku-postgresql:essential-0")
    addon("other-app")
    local before = call("GET", base .. "/connections", { token = "spec-token" })
    assert.equal(200, before.status)
    assert.equal(0, before:json().count)
    assert.matches('"results":%[%]', before.body)

    local res = call("POST", base .. "/auth/my-app")
    assert.equal(200, res.status)
    local doc = res:json()
    assert.matches("^user%-%x+$", doc.user.id)
    assert.equal(1, #doc.connections)
    local summary = doc.connections[1]
    assert.are_not.equal(a.id, summary.id)
    assert.equal(a.name, summary.resource_name)
    assert.equal("Sync", summary.addon_type)
    assert.equal(base, summary.region_url)
    assert.equal(base .. "/api/v3/connections/" .. summary.id, summary.detail_url)

    local list = call("GET", base .. "/connections", { json = nil }).body
    assert.matches(summary.id, list, 1, true)
    local by_name = assert(http.get(base .. "/connections", { query = { app = "my-app", resource_name = a.name },
      headers = { Authorization = "Bearer spec-token" } })):json()
    assert.equal(1, by_name.count)
    assert.equal(summary.id, by_name.results[1].id)
    -- linking again keeps the same connection
    assert.equal(summary.id, call("POST", base .. "/auth/my-app"):json().connections[1].id)

    local conn = api("GET", "/connections/" .. summary.id)
    assert.equal(200, conn.status)
    assert.equal("NEW", conn:json().state)
    assert.equal(a.id, conn:json().addon_id)
    assert.equal(mc.null, conn:json().schema_name)
    -- another user is not on the access list
    local other = api("GET", "/connections/" .. summary.id, { token = "someone-else" })
    assert.equal(404, other.status)
    assert.is_string(other:json().message)
    assert.equal(0, api("GET", "/connections", { token = "someone-else" }):json().count)
    -- the legacy regional link works too
    local legacy = api("POST", "/users/me/apps/my-app/auth", { token = "someone-else" })
    assert.equal(200, legacy.status)
    assert.equal(200, api("GET", "/connections/" .. summary.id, { token = "someone-else" }).status)
  end)

  it("answers 401 without a token and 404 for unknown ids, as {message}", function()
    local res = call("GET", base .. "/connections", { token = false })
    assert.equal(401, res.status)
    assert.is_string(res:json().message)
    assert.equal(401, api("GET", "/connections", { token = false }).status)
    knobs({ connect = { token = "pinned" } })
    assert.equal(401, api("GET", "/connections").status)
    assert.equal(200, api("GET", "/connections", { token = "pinned" }).status)
    assert.equal(404, api("GET", "/connections/nope", { token = "pinned" }).status)
    assert.equal(404, api("GET", "/mappings/nope", { token = "pinned" }).status)
  end)

  it("PATCH answers 202 and applies the config after the delay; bad values are 400", function()
    addon("my-app")
    local id = call("POST", base .. "/auth/my-app"):json().connections[1].id
    for _, body in ipairs({ { schema_name = "Bad-Name" }, { schema_name = string.rep("a", 64) },
        { schema_name = "x; drop" }, { db_key = "REDIS_URL" } }) do
      local res = api("PATCH", "/connections/" .. id, { json = body })
      assert.equal(400, res.status)
      assert.is_string(res:json().message)
    end
    knobs({ connect = { config_delay = 1 } })
    local res = api("PATCH", "/connections/" .. id,
      { json = { schema_name = "salesforce00d1", db_key = "DATABASE_URL" } })
    assert.equal(202, res.status)
    local now = api("GET", "/connections/" .. id):json()
    assert.equal("NEW", now.state) -- not yet applied
    local applied = wait_state("/connections/" .. id, "NEED_AUTHENTICATION")
    assert.equal("salesforce00d1", applied.schema_name)
    assert.equal("DATABASE_URL", applied.db_key)
    assert.is_string(applied.database.host)
  end)

  it("authorize_url gives a sandbox page; approving it authenticates and 302s to next", function()
    local conn = ready_connection(false)
    local path = "/connections/" .. conn.id .. "/authorize_url"
    assert.equal(400, api("POST", path, { json = { next = "/relative" } }).status)
    assert.equal(400, api("POST", path, { json = { environment = "moon" } }).status)
    local res = api("POST", path, { json = { environment = "sandbox", next = "https://app.example.com/done/tok" } })
    assert.equal(201, res.status)
    local redirect = res:json().redirect
    assert.equal(1, redirect:find(base .. "/sandbox/authorize/", 1, true))
    local page = call("GET", redirect)
    assert.equal(200, page.status)
    assert.matches("<form", page.body, 1, true)
    assert.equal("NEED_AUTHENTICATION", api("GET", "/connections/" .. conn.id):json().state)
    local approved = call("POST", redirect, { form = { decision = "approve" } })
    assert.equal(302, approved.status)
    assert.equal("https://app.example.com/done/tok", approved.headers["location"])
    local after = api("GET", "/connections/" .. conn.id):json()
    assert.equal("IDLE", after.state)
    assert.equal("sandbox", after.sf_info.environment)
    assert.equal("https://test.salesforce.com", after.sf_info.domain)
    assert.equal("00D5e000000AbCdEAK", after.organization_id) -- the fixture's first org
    assert.equal(404, call("GET", redirect).status) -- used once
    -- auto_approve: the GET alone approves
    knobs({ connect = { auto_approve = true } })
    local again = api("POST", path, { json = { next = "http://x.example/n" } }):json().redirect
    local got = call("GET", again)
    assert.equal(302, got.status)
    assert.equal("http://x.example/n", got.headers["location"])
    -- an expired link
    knobs({ connect = { authorize_ttl = 1, auto_approve = false } })
    local short = api("POST", path, { json = {} }):json().redirect
    assert.truthy(process.wait_for(function() return call("GET", short).status == 404 end, 5))
  end)

  it("imports mappings: IMPORT_CONFIGURATION, INITIAL -> DATA_SYNCED, BAD_CONFIG, tables in Postgres", function()
    local conn, schema = ready_connection()
    local import = "/connections/" .. conn.id .. "/actions/import"
    assert.equal(400, api("POST", import, { json = { version = 2, mappings = {} } }).status)
    assert.equal(400, api("POST", import, { json = { version = 1, mappings = { { object_name = 1 } } } }).status)
    local res = api("POST", import, { json = MAPPINGS })
    assert.equal(202, res.status)
    local deep = api("GET", "/connections/" .. conn.id .. "?deep=true"):json()
    assert.equal("IMPORT_CONFIGURATION", deep.state)
    local states = {}
    for _, m in ipairs(deep.mappings) do states[m.object_name] = m.state end
    assert.same({ Account = "INITIAL", Tweet__c = "INITIAL", Opportunity = "BAD_CONFIG",
                  Contact = "BAD_CONFIG" }, states)
    wait_state("/connections/" .. conn.id, "IDLE")

    local list = api("GET", "/connections/" .. conn.id .. "/mappings"):json()
    assert.equal(4, list.count)
    local account
    for _, m in ipairs(list.results) do if m.object_name == "Account" then account = m end end
    account = wait_state("/mappings/" .. account.id, "DATA_SYNCED")
    assert.equal("read_only", account.config.access)
    assert.equal(conn.id, account.connection.id)

    local cols = db:query("SELECT column_name, data_type FROM information_schema.columns "
      .. "WHERE table_schema = $1 AND table_name = 'account' ORDER BY column_name", schema)
    local names = {}
    for _, c in ipairs(cols) do names[#names + 1] = c.column_name end
    assert.same({ "_hc_err", "_hc_lastop", "createddate", "id", "isdeleted", "name", "sfid", "systemmodstamp",
      "twitter_handle__c" }, names)
    local rows = db:query("SELECT sfid, name, twitter_handle__c, _hc_lastop, isdeleted FROM "
      .. pg.quote_ident(schema) .. ".account ORDER BY sfid")
    assert.equal(3, #rows)
    assert.same({ sfid = "001000000000001AAA", name = "Acme", twitter_handle__c = "acme", _hc_lastop = "SYNCED",
      isdeleted = false }, rows[1])
    -- the second mapping's table, lower-cased
    local tweets
    for _, m in ipairs(list.results) do if m.object_name == "Tweet__c" then tweets = m end end
    wait_state("/mappings/" .. tweets.id, "DATA_SYNCED")
    local t = db:query("SELECT account__c, text__c FROM " .. pg.quote_ident(schema) .. ".tweet__c ORDER BY sfid")
    assert.same({ account__c = "001000000000001AAA", text__c = "Hello from acme" }, t[1])

    -- write-back: a row inserted locally into the read_write table gets an sfid and
    -- SYNCED, and reaches the simulated org; the read_only table is left alone
    assert(db:query("INSERT INTO " .. pg.quote_ident(schema) .. ".tweet__c (text__c, account__c) VALUES ($1, $2)",
      "written here", "001000000000001AAA"))
    assert(db:query("INSERT INTO " .. pg.quote_ident(schema) .. ".account (name) VALUES ('local only')"))
    assert.equal("DATA_SYNCED", api("GET", "/mappings/" .. tweets.id):json().state)
    api("GET", "/mappings/" .. account.id)
    local mine = db:query("SELECT sfid, _hc_lastop FROM " .. pg.quote_ident(schema) .. ".tweet__c"
      .. " WHERE text__c = 'written here'")[1]
    assert.matches("^a00%w+$", mine.sfid)
    assert.equal(18, #mine.sfid)
    assert.equal("SYNCED", mine._hc_lastop)
    local acct = db:query("SELECT sfid FROM " .. pg.quote_ident(schema) .. ".account WHERE name = 'local only'")[1]
    assert.equal(mc.null, acct.sfid)
    local org_rows = assert(http.get(control .. "/state")):json()["sandbox:connect:org:Tweet__c"]
    assert.equal(1, #org_rows)
    assert.equal(mine.sfid, require("mc.json").decode(org_rows[1]).sfid)
    api("GET", "/mappings/" .. tweets.id) -- a second read writes nothing twice
    assert.equal(1, #assert(http.get(control .. "/state")):json()["sandbox:connect:org:Tweet__c"])

    local export = api("GET", "/connections/" .. conn.id .. "/actions/export")
    assert.equal(200, export.status)
    assert.equal(1, export:json().version)
    assert.equal(4, #export:json().mappings)

    -- reload: 202, RELOAD_TABLE, then synced again
    assert.equal(202, api("POST", "/mappings/" .. account.id .. "/actions/reload").status)
    assert.equal("RELOAD_TABLE", api("GET", "/mappings/" .. account.id):json().state)
    wait_state("/mappings/" .. account.id, "DATA_SYNCED")
    assert.equal(3, #db:query("SELECT 1 FROM " .. pg.quote_ident(schema) .. ".account"))

    -- schema cannot move once mappings exist
    assert.equal(400, api("PATCH", "/connections/" .. conn.id, { json = { schema_name = "elsewhere" } }).status)

    -- delete: 204, then gone, and its table with it
    assert.equal(204, api("DELETE", "/mappings/" .. account.id).status)
    assert.equal(404, api("GET", "/mappings/" .. account.id).status)
    assert.equal(3, api("GET", "/connections/" .. conn.id .. "/mappings"):json().count)
    assert.equal(0, #db:query("SELECT 1 FROM information_schema.tables"
      .. " WHERE table_schema = $1 AND table_name = 'account'", schema))
  end)

  it("takes the org of the user who authorizes, and seeds the tables from that org", function()
    local conn, schema = ready_connection(false)
    knobs({ connect = { auto_approve = true } })
    local redirect = api("POST", "/connections/" .. conn.id .. "/authorize_url", { json = {} }):json().redirect
    assert.equal(200, call("GET", redirect .. "?login_hint=admin%40globex.example").status)
    local after = wait_state("/connections/" .. conn.id, "IDLE")
    assert.equal("00D5e000000GlBxEAK", after.organization_id)
    assert.equal(202, api("POST", "/connections/" .. conn.id .. "/actions/import", { json = MAPPINGS }).status)
    local account
    for _, m in ipairs(api("GET", "/connections/" .. conn.id .. "/mappings"):json().results) do
      if m.object_name == "Account" then account = m end
    end
    wait_state("/mappings/" .. account.id, "DATA_SYNCED")
    local rows = db:query("SELECT name, twitter_handle__c FROM " .. pg.quote_ident(schema) .. ".account ORDER BY sfid")
    assert.same({ name = "Globex Corporation", twitter_handle__c = "globexcorp" }, rows[1])
    assert.equal("scorpio", rows[3].twitter_handle__c)
  end)

  it("with many orgs at once, each connection gets its authorizing admin's org, schema and rows", function()
    local ACCOUNTS = { version = 1, mappings = { { object_name = "Account", config = { access = "read_only",
      fields = { Id = {}, SystemModstamp = {}, IsDeleted = {}, CreatedDate = {}, Name = {},
                 Twitter_Handle__c = {} } } } } }
    local admins = { "admin@org1.example", "admin@org2.example", "admin@org3.example", "admin@org4242.example",
                     "admin@globex.example" }
    for _ = 1, #admins do addon("my-app") end
    local conns = call("POST", base .. "/auth/my-app"):json().connections
    assert.equal(#admins, #conns)
    knobs({ connect = { auto_approve = true } })
    for _, c in ipairs(conns) do
      local schema = "sb_connect_" .. crypto.to_hex(crypto.random(4))
      schemas[#schemas + 1] = schema
      local config = { json = { schema_name = schema, db_key = "DATABASE_URL" } }
      assert.equal(202, api("PATCH", "/connections/" .. c.id, config).status)
      c.schema = schema
    end
    for i, c in ipairs(conns) do
      wait_state("/connections/" .. c.id, "NEED_AUTHENTICATION")
      local redirect = api("POST", "/connections/" .. c.id .. "/authorize_url",
        { json = { next = "https://app.example.com/done/" .. i } }):json().redirect
      -- the admin's browser: logged in to Salesforce as themselves, no login_hint
      local res = assert(http.get(redirect, { headers = { ["X-Sandbox-Login"] = admins[i] } }))
      assert.equal(302, res.status, res.body)
      assert.equal("https://app.example.com/done/" .. i, res.headers["location"])
    end
    for i, c in ipairs(conns) do
      local org, user = orgs.by_username(admins[i])
      local after = wait_state("/connections/" .. c.id, "IDLE")
      assert.equal(org.org_id, after.organization_id)
      assert.equal(org.org_id, after.sf_info.organization_id)
      assert.equal(admins[i], after.sf_info.username)
      assert.equal(user.user_id, after.user_info.user_id)
      assert.equal(202, api("POST", "/connections/" .. c.id .. "/actions/import", { json = ACCOUNTS }).status)
    end
    for i, c in ipairs(conns) do
      local org = orgs.by_username(admins[i])
      local m = api("GET", "/connections/" .. c.id .. "/mappings"):json().results[1]
      m = wait_state("/mappings/" .. m.id, "DATA_SYNCED")
      assert.equal(#org.accounts, m.counts.db)
      local rows = db:query("SELECT name, twitter_handle__c FROM " .. pg.quote_ident(c.schema)
        .. ".account ORDER BY sfid")
      assert.equal(#org.accounts, #rows)
      for k, a in ipairs(org.accounts) do
        assert.same({ name = a.name, twitter_handle__c = a.twitter_handle }, rows[k])
      end
    end
    local first = db:query("SELECT name FROM " .. pg.quote_ident(conns[4].schema) .. ".account ORDER BY sfid")[1]
    assert.equal("Org 4242", first.name)
  end)

  it("lets a sandbox org's admin authorize only an environment=sandbox link", function()
    local conn = ready_connection(false)
    knobs({ connect = { auto_approve = true } })
    local session = { ["X-Sandbox-Login"] = "admin@umbrella.example.sandbox" }
    local path = "/connections/" .. conn.id .. "/authorize_url"
    local wrong = api("POST", path, { json = { next = "https://app.example.com/done" } }):json().redirect
    local res = assert(http.get(wrong, { headers = session }))
    assert.equal(200, res.status)
    assert.matches("Please check your username and password", res.body, 1, true)
    assert.equal("NEED_AUTHENTICATION", api("GET", "/connections/" .. conn.id):json().state)
    local right = api("POST", path,
      { json = { environment = "sandbox", next = "https://app.example.com/done" } }):json().redirect
    assert.equal(302, assert(http.get(right, { headers = session })).status)
    local after = wait_state("/connections/" .. conn.id, "IDLE")
    assert.equal("00D5e000000UmBrEAK", after.organization_id)
    assert.equal("https://test.salesforce.com", after.sf_info.domain)
    -- and a production org's admin is refused at a sandbox link
    local other = api("POST", path, { json = { environment = "sandbox" } }):json().redirect
    assert.matches("Please check your username and password",
      assert(http.get(other, { headers = { ["X-Sandbox-Login"] = "admin@org9.example" } })).body, 1, true)
  end)

  it("keeps mappings INITIAL until the connection is authorized", function()
    local conn, schema = ready_connection(false)
    assert.equal(202, api("POST", "/connections/" .. conn.id .. "/actions/import", { json = MAPPINGS }).status)
    local m = api("GET", "/connections/" .. conn.id .. "/mappings"):json().results[1]
    -- a pause on purpose: nothing may happen, and an authorized connection
    -- would have its schema by now (config_delay is 0.2 s)
    host.sleep(0.5)
    assert.equal("NEED_AUTHENTICATION", api("GET", "/connections/" .. conn.id):json().state)
    assert.equal(0, #db:query("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema))
    knobs({ connect = { auto_approve = true } })
    call("GET", api("POST", "/connections/" .. conn.id .. "/authorize_url", { json = {} }):json().redirect)
    assert.equal("IMPORT_CONFIGURATION", api("GET", "/connections/" .. conn.id):json().state)
    assert.is_not.equal("DATA_SYNCED", api("GET", "/mappings/" .. m.id):json().state)
    wait_state("/connections/" .. conn.id, "IDLE")
  end)

  it("pauses, resumes and restarts (RECOVERY, then IDLE)", function()
    local conn = ready_connection()
    local path = "/connections/" .. conn.id
    assert.equal(202, api("POST", path .. "/actions/pause").status)
    assert.equal("PAUSED", api("GET", path):json().state)
    assert.equal(202, api("POST", path .. "/actions/resume").status)
    assert.equal("IDLE", api("GET", path):json().state)
    knobs({ connect = { recovery_delay = 1 } })
    assert.equal(202, api("POST", path .. "/actions/restart").status)
    assert.equal("RECOVERY", api("GET", path):json().state)
    wait_state(path, "IDLE")
    knobs({ connect = { action_status = 200 } })
    assert.equal(200, api("POST", path .. "/actions/pause").status)
  end)

  it("injects failures: a 500 with an empty body, a 429 with {message}", function()
    knobs({ connect = { fail_next = 1, fail_status = 500 } })
    local res = api("GET", "/connections")
    assert.equal(500, res.status)
    assert.equal("", res.body)
    assert.equal(200, api("GET", "/connections").status)
    knobs({ connect = { fail_next = 1, fail_status = 429 } })
    res = api("GET", "/connections")
    assert.equal(429, res.status)
    assert.is_string(res:json().message)
  end)
end)
