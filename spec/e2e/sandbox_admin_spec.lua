-- The simulated admin: with knob sendgrid.simulated_admin, mail sent through the
-- SendGrid stand-in gets read, and its links followed like a browser would.
local sandbox = require "support.sandbox"
local process = require "support.process"
local http = require "mc.http"
local host = require "mc.host"
local json = require "mc.json"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local ACCEPT = "application/vnd.heroku+json; version=3"

describe("sandbox: the simulated admin", function()
  local sb, root_url

  setup(function()
    local url
    sb, url = sandbox.start(6)
    root_url = url
  end)
  teardown(function() sb:stop() end)
  before_each(function()
    assert.equal(204, assert(http.post(root_url .. "/__sandbox/reset")).status)
  end)

  local function send(html, to)
    return assert(http.post(root_url .. "/sendgrid/v3/mail/send", {
      headers = { Authorization = "Bearer SG.key" },
      json = { personalizations = { { to = { { email = to or "admin@acme.example.com" } } } },
               from = { email = "onboarding@isv.example.com" }, subject = "Connect your org",
               content = { { type = "text/html", value = html } } } }))
  end

  local function admin_records()
    local state = assert(http.get(root_url .. "/__sandbox/state")):json()
    local out = {}
    for _, raw in ipairs(state["sandbox:sendgrid:admin"] or {}) do out[#out + 1] = json.decode(raw) end
    return out
  end

  it("follows the links in the mail it receives, redirects included", function()
    assert.equal(200, assert(http.post(root_url .. "/__sandbox/config", { json = {
      sendgrid = { simulated_admin = true, admin_follow = "/salesforce/" },
      salesforce = { auto_approve = true } } })).status)
    local authorize = root_url .. "/salesforce/services/oauth2/authorize?response_type=code&client_id=isv"
      .. "&redirect_uri=" .. http.escape(root_url .. "/__sandbox/config") .. "&state=s1"
    local res = send('<p>Please <a href="' .. authorize:gsub("&", "&amp;") .. '">connect</a>.'
      .. ' Or read <a href="https://example.com/help">the help</a>.</p>')
    assert.equal(202, res.status)
    local records
    assert.truthy(process.wait_for(function()
      records = admin_records()
      return #records > 0
    end, 15))
    assert.equal(1, #records) -- the help link does not match admin_follow
    assert.equal(authorize, records[1].link)
    assert.equal(200, records[1].status) -- authorize 302 -> redirect_uri 200
  end)

  local function knobs(doc)
    assert.equal(200, assert(http.post(root_url .. "/__sandbox/config", { json = doc })).status)
  end

  -- A Connect connection waiting for authorization -> its id, and its authorize
  -- page (on this sandbox) that 302s to next
  local function connect_link(next_url)
    local res = assert(http.post(root_url .. "/heroku/apps/my-app/addons", { json = { plan = "herokuconnect:demo" },
      headers = { Accept = ACCEPT, Authorization = "Bearer t" } }))
    assert.equal(201, res.status, res.body)
    local conn
    for _, c in ipairs(assert(http.post(root_url .. "/connect/auth/my-app",
        { headers = { Authorization = "Bearer t" } })):json().connections) do
      if c.resource_name == res:json().name then conn = c end
    end
    local function api(method, path, body)
      return assert(http.request({ method = method, url = root_url .. "/connect/api/v3/connections/" .. conn.id .. path,
        headers = { Authorization = "Bearer t" }, json = body }))
    end
    assert.equal(202, api("PATCH", "", { schema_name = "sb_admin_spec", db_key = "DATABASE_URL" }).status)
    assert.equal("NEED_AUTHENTICATION", api("GET", ""):json().state)
    local redirect = api("POST", "/authorize_url", { next = next_url }):json().redirect
    return conn.id, redirect, function() return api("GET", ""):json() end
  end

  it("is logged in to Salesforce as the mail's recipient, through redirects to another port", function()
    -- a second sandbox on another port, sharing this one's state (Redis db 6): the
    -- admin's browser crosses from one host to the other, as from Salesforce to Connect
    local other, other_url = sandbox.start(6)
    finally(function() other:stop() end)
    knobs({ heroku = { async = false }, connect = { config_delay = 0, auto_approve = true, postgres = false },
            salesforce = { auto_approve = true },
            sendgrid = { simulated_admin = true, admin_follow = "/salesforce/" } })
    local _, connect_page, connection = connect_link(root_url .. "/__sandbox/config")
    connect_page = other_url .. connect_page:sub(#root_url + 1)
    -- Salesforce's authorize without login_hint: the session decides who logs in; its
    -- redirect_uri is the Connect page on the other port, which 302s back here
    local authorize = root_url .. "/salesforce/services/oauth2/authorize?response_type=code&client_id=isv"
      .. "&redirect_uri=" .. http.escape(connect_page) .. "&state=s1"
    local link = '<a href="' .. authorize:gsub("&", "&amp;") .. '">connect</a>'
    assert.equal(202, send(link, "admin@org31.example").status)
    local records
    assert.truthy(process.wait_for(function()
      records = admin_records()
      return #records > 0
    end, 15))
    assert.equal(1, #records)
    assert.equal("admin@org31.example", records[1].login)
    assert.equal(200, records[1].status) -- Salesforce 302 -> Connect (other port) 302 -> /__sandbox/config 200
    local org = orgs.synthetic(31)
    -- Salesforce logged in the recipient (on this port) ...
    local state = assert(http.get(root_url .. "/__sandbox/state")):json()
    local codes = 0
    for key, grant in pairs(state) do
      if key:find("^sandbox:salesforce:code:") then
        codes = codes + 1
        assert.equal(org.org_id, grant.org_id)
        assert.equal(org.users[1].user_id, grant.user_id)
      end
    end
    assert.equal(1, codes)
    -- ... and so did Connect, on the other port: the header survived the redirect
    local conn = connection()
    assert.equal(org.org_id, conn.organization_id)
    assert.equal("admin@org31.example", conn.sf_info.username)
  end)

  it("relies on a custom header because libcurl drops Authorization on a redirect to another port", function()
    local other, other_url = sandbox.start(6)
    finally(function() other:stop() end)
    knobs({ heroku = { async = false }, connect = { config_delay = 0, auto_approve = true, postgres = false } })
    local headers = { Accept = ACCEPT, Authorization = "Bearer t", ["X-Sandbox-Login"] = "admin@org32.example" }
    -- Connect's page 302s to the Heroku rate-limit call, which needs the bearer token
    local _, same_port = connect_link(root_url .. "/heroku/account/rate-limits")
    assert.equal(200, assert(http.get(same_port, { follow = 5, headers = headers })).status)
    local _, cross_port, connection = connect_link(other_url .. "/heroku/account/rate-limits")
    assert.equal(401, assert(http.get(cross_port, { follow = 5, headers = headers })).status)
    assert.equal(orgs.synthetic(32).org_id, connection().organization_id)
  end)

  it("reads nothing while the knob is off", function()
    assert.equal(202, send('<a href="' .. root_url .. '/__sandbox/config">x</a>').status)
    -- a pause on purpose: nothing may happen, and with the knob on the admin's
    -- process (started at the send) follows such a link well within 1 s
    host.sleep(1)
    assert.same({}, admin_records())
  end)
end)
