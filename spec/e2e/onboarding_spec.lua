-- Onboarding end to end: web, worker and sandbox as separate processes, a signed
-- post-install callback exactly as the package's Apex sends it, the simulated
-- admin following the mails, and the org reaching `active` with its schema and
-- tables in Postgres. Redis dbs 1 (app) and 2 (sandbox); database mc_onboarding.
local stack = require "support.stack"
local http = require "mc.http"
local host = require "mc.host"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local ACME = { org_id = "00D5e000000AbCdEAK", org_name = "Acme", admin_email = "admin@acme.example" }

local function tables_of(s, schema)
  local rows = assert(s.pg:query(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name", schema))
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = r.table_name end
  return out
end

local function has(list, item)
  for _, v in ipairs(list) do if v == item then return true end end
  return false
end

describe("onboarding end to end", function()
  local s
  setup(function() s = stack.start({ name = "onboarding", app_db = 1, sandbox_db = 2 }) end)
  teardown(function() if s then s:stop() end end)

  it("takes one org from the install callback to active, its tables in its own schema", function()
    local res = s:post_install(ACME)
    assert.are.equal(202, res.status, res.body)
    local body = res:json()
    assert.are.equal(ACME.org_id, body.org_id)
    assert.are.equal(s.web_url .. "/organizations/" .. ACME.org_id, body.url)
    local ok, state = s:wait_state(ACME.org_id, "active", 90)
    assert(ok, "org ended in " .. tostring(state) .. "\n" .. s:logs())
    local org = assert(s:get_org(ACME.org_id))
    assert.are.equal("active", org.state)
    assert.are.equal("salesforce00d5e000000abcdeak", org.schema_name)
    local seen = {}
    for _, e in ipairs(org.events) do if e.kind == "transition" then seen[#seen + 1] = e.to_state end end
    assert.are.same({ "addon_provisioned", "app_linked", "connection_configured", "authorize_url_ready",
      "awaiting_app_oauth", "app_authorized", "subscriber_updated", "awaiting_connect_oauth",
      "connect_authorized", "mappings_imported", "active" }, seen)
    local tables = tables_of(s, org.schema_name)
    for _, t in ipairs({ "account", "contact", "tweet__c", "connection__c" }) do
      assert(has(tables, t), t .. " missing from " .. table.concat(tables, ","))
    end
    -- the seeded accounts are Acme's
    local accounts = assert(s.pg:query("SELECT name FROM " .. org.schema_name .. ".account ORDER BY name"))
    assert.are.equal("Acme", accounts[1].name)
    -- the org got its Connection__c through Apex REST, with Connect's authorize URL
    local sf = assert(http.get(s.sandbox_url .. "/__sandbox/salesforce/orgs/" .. ACME.org_id)):json()
    assert.are.equal(org.connection_id, sf.Connection__c.Connection_Id__c)
    -- Connect's `next` again (a second click): a page, and nothing moves
    local ring = assert(require("mc.crypto").keyring(stack.KEYS))
    local token = ring:seal(ACME.org_id .. ":" .. org.connection_id, "connection_auth_complete")
    local again = assert(http.get(s.web_url .. "/connection_auth_complete/" .. token))
    assert.are.equal(200, again.status)
    assert.are.equal("active", s:state(ACME.org_id))
    -- a token for another connection does not open this org
    token = ring:seal(ACME.org_id .. ":not-the-connection", "connection_auth_complete")
    assert.are.equal(404, assert(http.get(s.web_url .. "/connection_auth_complete/" .. token)).status)
    -- tokens are stored sealed, never in the clear
    local row = assert(s.pg:query("SELECT access_token, refresh_token FROM organizations WHERE org_id = $1",
      ACME.org_id))[1]
    assert.matches("^v1%.", row.access_token)
    assert.is_nil(row.access_token:find("!AQ", 1, true))
  end)

  it("onboards 50 orgs at once, each in its own schema with its own org's data", function()
    local list = {}
    for i = 1, 50 do
      local o = orgs.synthetic(i)
      list[i] = { org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username }
      local res = s:post_install(list[i])
      assert.are.equal(202, res.status, res.body)
    end
    for _, o in ipairs(list) do
      local ok, state = s:wait_state(o.org_id, "active", 240)
      assert(ok, o.org_id .. " ended in " .. tostring(state))
    end
    local schemas = assert(s.pg:query("SELECT org_id, schema_name FROM organizations WHERE org_id <> $1", ACME.org_id))
    assert.are.equal(50, #schemas)
    local distinct = {}
    for _, r in ipairs(schemas) do
      assert.are.equal("salesforce" .. r.org_id:lower(), r.schema_name)
      distinct[r.schema_name] = true
      -- each schema's accounts are its own org's (the sandbox seeds from the authorizing user's org)
      local names = assert(s.pg:query("SELECT name FROM " .. r.schema_name .. ".account"))
      local want = {}
      for _, a in ipairs(orgs.by_id(r.org_id).accounts) do want[a.name] = true end
      assert(#names > 0, "no accounts in " .. r.schema_name)
      for _, n in ipairs(names) do assert(want[n.name], n.name .. " crossed into " .. r.schema_name) end
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.are.equal(50, n)
    -- one add-on per org, no more
    assert.are.equal(51, #s:addons())
  end)
end)
