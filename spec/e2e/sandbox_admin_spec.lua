-- The simulated admin: with knob sendgrid.simulated_admin, mail sent through the
-- SendGrid stand-in gets read, and its links followed like a browser would.
local sandbox = require "support.sandbox"
local process = require "support.process"
local http = require "mc.http"
local host = require "mc.host"
local json = require "mc.json"

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

  local function send(html)
    return assert(http.post(root_url .. "/sendgrid/v3/mail/send", {
      headers = { Authorization = "Bearer SG.key" },
      json = { personalizations = { { to = { { email = "admin@acme.example.com" } } } },
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

  it("reads nothing while the knob is off", function()
    assert.equal(202, send('<a href="' .. root_url .. '/__sandbox/config">x</a>').status)
    os.execute("sleep 1")
    assert.same({}, admin_records())
  end)
end)
