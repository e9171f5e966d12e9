local messages = require "onboarding.messages"
local sendgrid = require "sandbox.sendgrid" -- the simulated admin's link finder

describe("onboarding.messages", function()
  local URL = "https://app.test/authenticate?org=00D5e000000AbCdEAK&step=1"

  local function links(m)
    return sendgrid.links({ { type = "text/plain", value = m.text }, { type = "text/html", value = m.html } })
  end

  it("renders the sign-in mail with its subject, and the link in the text and as an href", function()
    local m = assert(messages.render("authenticate", { org_name = "Acme", admin_email = "ada@acme.test",
                                                       url = URL, service = "Tweets for Salesforce" }))
    assert.equal("Connect Acme to Tweets for Salesforce: sign in to Salesforce", m.subject)
    assert.matches("\n" .. URL:gsub("%p", "%%%0") .. "\n", m.text)
    assert.matches('href="' .. URL:gsub("&", "&amp;"):gsub("%p", "%%%0") .. '"', m.html)
    assert.not_matches("^Subject:", m.text)
    assert.not_matches("^\n", m.text)
    assert.same({ URL }, links(m))
  end)

  it("renders the Heroku Connect mail with its link", function()
    local url = "https://127.0.0.1:5100/connect/sandbox/authorize/abc?next=x"
    local m = assert(messages.render("authorize_connect", { org_name = "Acme", url = url }))
    assert.matches("one more step: authorize Heroku Connect", m.subject)
    assert.matches("Acme", m.subject)
    assert.same({ url }, links(m))
  end)

  it("renders the activation and failure notices", function()
    local m = assert(messages.render("active", { org_name = "Acme", schema_name = "salesforce00d5e" }))
    assert.matches("Acme", m.subject)
    assert.matches("salesforce00d5e", m.text)
    assert.matches("<code>salesforce00d5e</code>", m.html)
    m = assert(messages.render("failed", { org_name = "Acme", step = "addon_provisioned",
                                           reason = "Heroku answered 422 <invalid_params>" }))
    assert.matches("Acme", m.subject)
    assert.matches('"addon_provisioned"', m.text)
    assert.matches("Heroku answered 422 <invalid_params>", m.text, 1, true)
    assert.matches("Heroku answered 422 &lt;invalid_params&gt;", m.html, 1, true)
  end)

  it("keeps an org named <script> as text in the HTML", function()
    local m = assert(messages.render("authenticate", { org_name = "<script>alert(1)</script>",
                                                       admin_email = "a@b.test", url = URL }))
    assert.is_nil(m.html:find("<script>", 1, true))
    assert.truthy(m.html:find("&lt;script&gt;alert(1)&lt;/script&gt;", 1, true))
    assert.truthy(m.subject:find("<script>alert(1)</script>", 1, true)) -- a subject is text
  end)

  it("defaults the service name", function()
    local m = assert(messages.render("active", { org_name = "Acme", schema_name = "s" }))
    assert.equal("Acme is connected to " .. (os.getenv("SERVICE_NAME") or "multiconnect"), m.subject)
  end)

  it("refuses missing variables, a non-http link, multi-line names and unknown kinds", function()
    local cases = {
      { "authenticate", { org_name = "Acme", admin_email = "a@b.test" }, "authenticate needs url" },
      { "authorize_connect", { url = URL }, "authorize_connect needs org_name" },
      { "authorize_connect", { org_name = "Acme", url = "javascript:alert(1)" },
        "authorize_connect: url must be an http(s) URL" },
      { "active", { org_name = "Acme\nBcc: x", schema_name = "s" }, "active: org_name must be one line" },
      { "failed", { org_name = "Acme", step = "x" }, "failed needs reason" },
      { "welcome", {}, "unknown message kind welcome" },
    }
    for _, c in ipairs(cases) do
      local m, err = messages.render(c[1], c[2])
      assert.is_nil(m)
      assert.equal(c[3], err)
    end
  end)

  it("has a text and an HTML template with a subject for every kind", function()
    for kind, needs in pairs(messages.KINDS) do
      local vars = { url = URL }
      for _, name in ipairs(needs) do if name ~= "url" then vars[name] = "v" end end
      local m = assert(messages.render(kind, vars))
      assert.truthy(#m.subject > 0 and #m.text > 0 and #m.html > 0)
      assert.matches("^<!DOCTYPE html>", m.html)
    end
  end)
end)
