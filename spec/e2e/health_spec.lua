-- The health watch end to end: web, worker, clock and the sandbox as separate
-- processes. An org onboarded to active is broken in the sandbox's Heroku
-- Connect: it turns degraded with one mail to its admin and one alert to the
-- operator however many checks follow, and returns to active once healed. A
-- lost Connect authorization mails the admin a fresh authorize link, which the
-- simulated admin follows, and that heals it. Redis dbs 23 (app) and 24
-- (sandbox); database mc_health.
local stack = require "support.stack"
local daemon = require "support.daemon"
local proc = require "support.process"
local http = require "mc.http"
local host = require "mc.host"

local ACME = { org_id = "00D5e000000AbCdEAK", org_name = "Acme", admin_email = "admin@acme.example" }
local OPS = "ops@isv.example"

describe("the health watch end to end", function()
  local s, clock

  setup(function()
    s = stack.start({ name = "health", app_db = 23, sandbox_db = 24,
      env = { OPS_EMAIL = OPS, HEALTH_INTERVAL = "10" } })
    clock = daemon.start({ command = "clock", root = host.root, env = s.env })
  end)
  teardown(function()
    if clock then clock:stop() end
    if s then s:stop() end
  end)

  local function mails(to, subject)
    local res = assert(http.get(s.sandbox_url .. "/sendgrid/__mailbox?to=" .. to))
    local out = {}
    for _, m in ipairs(res:json()) do
      if not subject or m.subject:find(subject, 1, true) then out[#out + 1] = m end
    end
    return out
  end

  local function connection_id()
    return assert(s.pg:query("SELECT connection_id FROM organizations WHERE org_id = $1", ACME.org_id))[1].connection_id
  end

  local function sandbox(action, doc)
    local res = assert(http.post(s.sandbox_url .. "/__sandbox/connect/connections/" .. connection_id() .. "/" .. action,
      { json = doc or {} }))
    assert.equal(204, res.status, res.body)
  end

  -- waits until the watch has visited the org again after now
  local function another_visit()
    local since = assert(s.pg:query("SELECT now() AS t"))[1].t
    assert(proc.wait_for(function()
      local rows = assert(s.pg:query("SELECT 1 FROM sync_health WHERE org_id = $1 AND checked_at > $2",
        ACME.org_id, since))
      return #rows > 0
    end, 30, "another health check"), s:logs())
  end

  local function wait_state(want)
    local ok, got = s:wait_state(ACME.org_id, want, 40)
    assert(ok, "org is " .. tostring(got) .. ", not " .. want .. "\n" .. s:logs())
  end

  it("degrades on a broken mapping with one mail and one alert, and heals back to active", function()
    assert.equal(202, s:post_install(ACME).status)
    wait_state("active")
    another_visit()
    assert.equal("active", s:state(ACME.org_id))
    sandbox("break", { mapping = "Contact", state = "SYSTEM_ERROR", description = "Field Contact.Foo__c is gone" })
    wait_state("degraded")
    assert(proc.wait_for(function() return #mails(OPS) == 1 and #mails(ACME.admin_email, "not syncing") == 1 end,
      20, "the two alerts"), s:logs())
    assert.matches("mapping Contact is SYSTEM_ERROR: Field Contact.Foo__c is gone",
      mails(ACME.admin_email, "not syncing")[1].text, 1, true)
    assert.matches("is degraded", mails(OPS)[1].subject, 1, true)
    -- more visits of the same episode: nothing more
    another_visit()
    another_visit()
    assert.equal("degraded", s:state(ACME.org_id))
    assert.equal(1, #mails(OPS))
    assert.equal(1, #mails(ACME.admin_email, "not syncing"))
    assert.matches('at=error msg="tenant degraded"', s.worker:log(), 1, true)
    local _, count = s.worker:log():gsub('msg="tenant degraded"', "")
    assert.equal(1, count)
    sandbox("heal")
    wait_state("active")
    local org = assert(s:get_org(ACME.org_id))
    assert.same({}, org.health.problems)
    assert.equal("IDLE", org.health.connection_state)
  end)

  it("mails a fresh authorize link when Connect loses its authorization; following it heals the org", function()
    wait_state("active")
    local before = #mails(ACME.admin_email, "authorization again")
    sandbox("break", { state = "NEED_AUTHENTICATION" })
    -- the simulated admin follows the link at once: degraded, then active again
    assert(proc.wait_for(function()
      local rows = assert(s.pg:query([[SELECT count(*)::int AS n FROM onboarding_events
        WHERE org_id = $1 AND from_state = 'degraded' AND to_state = 'active']], ACME.org_id))
      return rows[1].n >= 2
    end, 60, "the org to heal a second time"), s:logs())
    wait_state("active")
    local sent = mails(ACME.admin_email, "authorization again")
    assert.equal(before + 1, #sent)
    assert.matches("/connect/sandbox/authorize/", sent[#sent].text, 1, true)
    local org = assert(s:get_org(ACME.org_id))
    assert.same({}, org.health.problems)
    assert.are_not.equal("NEED_AUTHENTICATION", org.health.connection_state)
    local last = org.events[#org.events]
    assert.same({ "degraded", "active" }, { last.from_state, last.to_state })
    assert.equal(2, #mails(OPS)) -- one per episode
  end)
end)
