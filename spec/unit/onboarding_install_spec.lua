-- The pure parts of onboarding: Salesforce ids, the install callback's
-- validation, the state machine's table, backoff.
local host = require "mc.host"
package.path = host.root .. "/scripts/?.lua;" .. package.path
local sfid = require "lib.sfid"
local install = require "onboarding.install"
local states = require "onboarding.states"

describe("lib.sfid", function()
  it("extends a 15-character id with its case-safe suffix", function()
    assert.are.equal("00D5e000000AbCdEAK", sfid.to18("00D5e000000AbCd"))
    assert.are.equal("001000000000000AAA", sfid.to18("001000000000000"))
  end)

  it("accepts a correct 18-character id in any case of its suffix, refuses a wrong one", function()
    assert.are.equal("00D5e000000AbCdEAK", sfid.to18("00D5e000000AbCdeak"))
    local id, err = sfid.to18("00D5e000000AbCdEAX")
    assert.is_nil(id)
    assert.matches("checksum", err)
  end)

  it("tells ids that differ only in case apart (why schemas use the 18-character form)", function()
    assert.are_not.equal(sfid.to18("00D5e000000AbCd"):lower(), sfid.to18("00D5e000000abcd"):lower())
  end)

  it("refuses what is not an id, or not an org's", function()
    for _, bad in ipairs({ "", "00D5e000000AbC", "00D5e000000AbCd-", "00D5e000000AbCdEAKX", 42 }) do
      assert.is_nil((sfid.to18(bad)))
    end
    local id, err = sfid.org_id("0055e000001XyZw")
    assert.is_nil(id)
    assert.matches("organization id", err)
  end)
end)

describe("onboarding.install", function()
  local ok_doc = { org_id = "00D5e000000AbCd", org_name = "  Acme  ", admin_email = "admin@acme.example" }

  it("normalises a valid callback", function()
    local f = assert(install.parse(ok_doc))
    assert.are.equal("00D5e000000AbCdEAK", f.org_id)
    assert.are.equal("Acme", f.org_name)
    assert.are.equal("production", f.environment)
    assert.is_false(f.is_upgrade)
  end)

  it("names every bad field", function()
    local f, errors = install.parse({ org_id = 7, org_name = ("x"):rep(256), admin_email = "a@b",
      is_push = 1, previous_version = "one", environment = "sandbox", login_domain = "x.example", extra = true })
    assert.is_nil(f)
    assert.matches("string", errors.org_id)
    assert.matches("255", errors.org_name)
    assert.matches("e%-mail", errors.admin_email)
    assert.matches("true or false", errors.is_push)
    assert.matches("version", errors.previous_version)
    assert.matches("only allowed", errors.login_domain)
    assert.matches("not a known field", errors.extra)
  end)

  it("takes only addresses the mailer will send to", function()
    for _, bad in ipairs({ "a..b@example.com", ".a@example.com", "a@ex..ample.com", "a@-ex.com", "a b@example.com" }) do
      local _, e = install.parse({ org_id = "00D5e000000AbCd", org_name = "A", admin_email = bad })
      assert.is_string(e and e.admin_email, bad)
    end
  end)

  it("refuses control characters, arrays and missing fields", function()
    local _, e = install.parse({ org_id = "00D5e000000AbCd", org_name = "A\nB", admin_email = "a@b.example" })
    assert.matches("control", e.org_name)
    _, e = install.parse({ "a" })
    assert.is_string(e.body)
    _, e = install.parse({})
    assert.matches("required", e.org_id)
    assert.matches("required", e.admin_email)
  end)

  it("takes a custom login domain for a custom environment", function()
    local doc = { org_id = "00D5e000000AbCd", org_name = "A", admin_email = "a@b.example",
      environment = "custom", login_domain = "https://Acme.my.salesforce.com" }
    local f = assert(install.parse(doc))
    assert.are.equal("acme.my.salesforce.com", f.login_domain)
    doc.login_domain = "acme my salesforce"
    assert.is_nil((install.parse(doc)))
    -- our client secret is posted to that host: it must be Salesforce's
    for _, domain in ipairs({ "attacker.example", "my.salesforce.com", "acme.my.salesforce.com.evil.example",
                              "-acme.my.salesforce.com", "a_b.my.salesforce.com" }) do
      doc.login_domain = domain
      local f2, errors = install.parse(doc)
      assert.is_nil(f2, domain)
      assert.matches("My Domain", errors.login_domain)
    end
    doc.login_domain = "acme--uat.sandbox.my.salesforce.com"
    assert.is_table((install.parse(doc)))
  end)
end)

describe("onboarding.states", function()
  it("orders the design's states, with people-driven and final ones marked", function()
    assert.are.equal("addon_provisioned", states.next("received"))
    assert.are.equal("active", states.next("mappings_imported"))
    assert.is_nil(states.next("active"))
    assert.is_true(states.PERSON.awaiting_app_oauth)
    assert.is_true(states.FINAL.failed)
    for _, s in ipairs(states.ORDER) do assert.are_not.equal("unknown", states.next_action(s)) end
  end)
end)
