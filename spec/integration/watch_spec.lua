-- The health watch in-process (scripts/watch/, jobs/health/, jobs/alerts/): a
-- replay server answers Connect's GET /connections/{id}?deep=true as each test
-- needs; the sandbox's SendGrid takes the alert mails. Database mc_spec_watch,
-- Redis 20 (jobs), 21 (sandbox), 22 (replay).
local json = require "mc.json"
local log = require "mc.log"
local fixture = require "support.onboarding_fixture"
local replay = require "support.replay_server"
local check = require "watch.check"
local alerts = require "watch.alerts"
local record = require "watch.record"
local watch_job = require "jobs.health.watch"
local check_job = require "jobs.health.check"

local ORG = "00D5e000000AbCdEAK"
local SCHEMA = "salesforce00d5e000000abcdeak"
local NOW = os.time()

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

-- Connect's connection, deep: every mapping synced and polled `ago` seconds ago
local function connection(state, mappings)
  return { id = "c1", state = state or "IDLE", mappings = mappings or {
    { object_name = "Account", state = "DATA_SYNCED", state_description = "OK",
      counts = { db = 3, sf = 3, pending = 0, errors = 0 }, times = { sf_poll = iso(NOW - 30) } },
    { object_name = "Contact", state = "DATA_SYNCED", state_description = "OK",
      counts = { db = 2, sf = 2, pending = 0, errors = 0 }, times = { sf_poll = iso(NOW - 30) } },
  } }
end

local function broken_mapping()
  local c = connection()
  c.mappings[2].state, c.mappings[2].state_description = "SYSTEM_ERROR", "Field Contact.Foo__c does not exist"
  return c
end

describe("the health watch", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_watch", redis = 20, sandbox = 21,
    env = { OPS_EMAIL = "ops@isv.example", HEALTH_INTERVAL = "300", HEALTH_STALE_AFTER = "3600" } })
  local srv = replay.fixture(_ENV, 22)
  local ctx = { log = log.with({ job = "spec" }) }

  local function onboarded(state, id)
    return fx:org(id or ORG, { state = state or "active", schema_name = id and ("s" .. id:lower()) or SCHEMA,
      connection_id = "c1", region_url = srv.url, addon_name = "mc-spec-hc-" .. (id or ORG):lower() })
  end

  local function visit() return fixture.logged(check.visit, fx.conn, ORG) end

  local function queued()
    local out = {}
    for i, j in ipairs(fx:queued()) do out[i] = j.class .. " " .. table.concat(j.args, " ") end
    return out
  end

  local function mailbox(to)
    return (fx.sb:get("/sendgrid/__mailbox?to=" .. to))
  end

  it("records a healthy sync and leaves the org active, alerting nobody", function()
    onboarded()
    srv:answer(200, connection())
    local out, verdict = visit()
    assert.equal("healthy", verdict)
    assert.equal("/api/v3/connections/c1", srv:requests()[1].path)
    assert.equal("true", srv:requests()[1].query.deep)
    local seen = assert(record.get(fx.other, ORG))
    assert.equal("IDLE", seen.connection_state)
    assert.same({ "Account", "DATA_SYNCED", 3 }, { seen.mappings[1].object_name, seen.mappings[1].state,
      seen.mappings[1].counts.db })
    assert.same({}, seen.problems)
    assert.equal(mc.null, seen.episode_since)
    assert.are_not.equal(mc.null, seen.last_sync_at)
    assert.equal("active", fx:row(ORG).state)
    assert.same({}, queued())
    assert.is_nil(out:find("at=error", 1, true))
  end)

  it("degrades on a broken mapping with one log line and one pair of alerts, however many visits", function()
    onboarded()
    srv:answer(200, broken_mapping()):answer(200, broken_mapping()):answer(200, broken_mapping())
    local out, verdict, detail = visit()
    assert.same({ "degraded", "mapping" }, { verdict, detail })
    assert.matches('at=error msg="tenant degraded"', out, 1, true)
    assert.matches("problems=mapping", out, 1, true)
    local row = fx:row(ORG)
    assert.equal("degraded", row.state)
    local ev = fx:events(ORG)
    assert.same({ "transition", "active", "degraded" }, { ev[1][1], ev[1][2], ev[1][3] })
    assert.equal("mapping Contact is SYSTEM_ERROR: Field Contact.Foo__c does not exist", ev[1][4].health[1].text)
    assert.same({ "alerts.mail " .. ORG .. " degraded admin", "alerts.mail " .. ORG .. " degraded operator" }, queued())
    local seen = record.get(fx.other, ORG)
    assert.are_not.equal(mc.null, seen.episode_since)
    assert.are_not.equal(mc.null, seen.alerted_at)
    -- later visits of the same episode: no second alert, no second line
    for _ = 1, 2 do
      out, verdict = visit()
      assert.equal("still degraded", verdict)
      assert.is_nil(out:find("at=error", 1, true))
    end
    assert.equal(2, #queued())
    assert.equal(1, #fx:events(ORG))
  end)

  it("heals back to active once the sync is healthy, closing the episode", function()
    onboarded()
    srv:answer(200, broken_mapping()):answer(200, connection())
    assert.equal("degraded", select(2, visit()))
    local out, verdict = visit()
    assert.equal("healed", verdict)
    assert.matches('msg="tenant healed"', out, 1, true)
    assert.equal("active", fx:row(ORG).state)
    local ev = fx:events(ORG)
    assert.same({ "transition", "degraded", "active", "healed" }, { ev[2][1], ev[2][2], ev[2][3], ev[2][4].health })
    local seen = record.get(fx.other, ORG)
    assert.same({ mc.null, mc.null }, { seen.episode_since, seen.alerted_at })
    assert.same({}, seen.problems)
  end)

  it("degrades on NEED_AUTHENTICATION, a pause and a stale sync, each named", function()
    onboarded()
    local stale = connection()
    for _, m in ipairs(stale.mappings) do m.times.sf_poll = iso(NOW - 7200) end
    srv:answer(200, connection("NEED_AUTHENTICATION", {})):answer(200, connection())
      :answer(200, connection("PAUSED")):answer(200, connection())
      :answer(200, stale)
    assert.same({ "degraded", "authorization" }, { select(2, visit()) })
    assert.equal("healed", select(2, visit()))
    assert.same({ "degraded", "paused" }, { select(2, visit()) })
    assert.equal("healed", select(2, visit()))
    assert.same({ "degraded", "stale" }, { select(2, visit()) })
    assert.equal(6, #queued()) -- three episodes, two alerts each
  end)

  it("queues the alerts a crash left unsent, once", function()
    onboarded("degraded")
    srv:answer(200, broken_mapping()):answer(200, broken_mapping())
    assert.equal("still degraded", select(2, visit()))
    assert.equal(2, #queued())
    assert.equal("still degraded", select(2, visit()))
    assert.equal(2, #queued())
  end)

  it("judges nothing when Connect cannot be read, and comes back after its Retry-After", function()
    onboarded()
    srv:answer(200, connection()):answer(429, { message = "Too many requests" }, { ["Retry-After"] = "30" })
      :answer(503, { message = "down" })
    assert.equal("healthy", select(2, visit()))
    local _, ok = fixture.logged(check_job.perform, { ORG }, ctx)
    assert.is_true(ok)
    assert.equal("active", fx:row(ORG).state)
    local seen = record.get(fx.other, ORG)
    assert.equal("connect: HTTP 429 Too many requests", seen.error)
    assert.equal("IDLE", seen.connection_state) -- what was seen before stays
    local later = fx:scheduled()
    assert.equal(1, #later)
    assert.same({ "health.check", ORG }, { later[1].job.class, later[1].job.args[1] })
    assert(later[1]["in"] > 28 and later[1]["in"] <= 30, tostring(later[1]["in"]))
    -- without a Retry-After: the next visit of the watch, no retry of its own
    _, ok = fixture.logged(check_job.perform, { ORG }, ctx)
    assert.is_true(ok)
    assert.equal(1, #fx:scheduled())
  end)

  it("skips an org that is not onboarded", function()
    onboarded("mappings_imported")
    assert.equal("skipped", select(2, visit()))
    assert.same({}, srv:requests())
  end)

  it("spreads one check per onboarded org over HEALTH_INTERVAL", function()
    onboarded("active", "00D5e00000S0001AAA")
    onboarded("degraded", "00D5e00000S0002AAA")
    onboarded("active", "00D5e00000S0003AAA")
    onboarded("mappings_imported", "00D5e00000S0004AAA")
    onboarded("offboarded", "00D5e00000S0005AAA")
    local _, ok = fixture.logged(watch_job.perform, {}, ctx)
    assert.is_true(ok)
    assert.same({ "health.check 00D5e00000S0001AAA" }, queued())
    local later = fx:scheduled()
    assert.equal(2, #later)
    assert.equal("00D5e00000S0002AAA", later[1].job.args[1])
    assert(later[1]["in"] > 98 and later[1]["in"] <= 100, tostring(later[1]["in"]))
    assert(later[2]["in"] > 198 and later[2]["in"] <= 200, tostring(later[2]["in"]))
  end)

  describe("alert mails", function()
    local function degraded_with(problems)
      onboarded("degraded")
      assert(record.saw(fx.conn, ORG, { connection_state = "IDLE", mappings = {}, problems = problems }))
    end

    it("asks the admin to authorize again with a fresh Connect link, and tells the operator", function()
      degraded_with({
        { kind = "authorization", text = "Heroku Connect needs the org's Salesforce authorization again" } })
      srv:answer(201, { redirect = "https://connect.example/authorize/fresh" })
      assert(alerts.send(fx.conn, ORG, "degraded", "admin"))
      local req = srv:requests()[1]
      assert.equal("/api/v3/connections/c1/authorize_url", req.path)
      assert.matches("^https://mc.example/connection_auth_complete/", json.decode(req.body)["next"])
      local mail = mailbox("admin@acme.example")
      assert.equal(1, #mail)
      assert.equal("Acme: Heroku Connect needs your authorization again", mail[1].subject)
      assert.matches("https://connect.example/authorize/fresh", mail[1].text, 1, true)
      assert(alerts.send(fx.conn, ORG, "degraded", "operator"))
      local ops = mailbox("ops@isv.example")
      assert.equal(1, #ops)
      assert.matches("Acme (" .. ORG .. ") is degraded", ops[1].subject, 1, true)
      assert.matches("mailed a fresh Heroku Connect authorize link", ops[1].text, 1, true)
      assert.matches("https://mc.example/organizations/" .. ORG, ops[1].text, 1, true)
    end)

    it("tells the admin what broke, and the operator the command that fixes it", function()
      degraded_with({ { kind = "mapping", text = "mapping Contact is SYSTEM_ERROR: gone" } })
      assert(alerts.send(fx.conn, ORG, "degraded", "admin"))
      local mail = mailbox("admin@acme.example")
      assert.equal("Acme: your data is not syncing with multiconnect", mail[1].subject)
      assert.matches("mapping Contact is SYSTEM_ERROR: gone", mail[1].text, 1, true)
      assert(alerts.send(fx.conn, ORG, "degraded", "operator"))
      assert.matches("org(\"" .. ORG .. "\"):reimport_mapping()", mailbox("ops@isv.example")[1].text, 1, true)
    end)

    it("mails a failed org's admin and the operator, with the resume command", function()
      fx:org(ORG, { state = "failed", failed_step = "connect_authorized", last_error = "invalid mapping: x" })
      assert(alerts.send(fx.conn, ORG, "failed", "admin"))
      local mail = mailbox("admin@acme.example")
      assert.equal("Acme: connecting to multiconnect has stopped", mail[1].subject)
      assert.matches("Our team has been told", mail[1].text, 1, true)
      assert(alerts.send(fx.conn, ORG, "failed", "operator"))
      local ops = mailbox("ops@isv.example")[1]
      assert.equal("[multiconnect] Acme (" .. ORG .. ") failed at connect_authorized", ops.subject)
      assert.matches("invalid mapping: x", ops.text, 1, true)
      assert.matches("multiconnect console -e 'org(\"" .. ORG .. "\"):resume()'", ops.text, 1, true)
    end)

    it("sends nothing once the org left the state, nor to an operator without OPS_EMAIL", function()
      fx:org(ORG, { state = "active" })
      assert.equal("moved on", alerts.send(fx.conn, ORG, "failed", "admin"))
      assert.equal("moved on", alerts.send(fx.conn, ORG, "degraded", "operator"))
      fx.config:set({ OPS_EMAIL = false })
      assert(fx.conn:exec("DELETE FROM organizations"))
      degraded_with({ { kind = "stale", text = "no sync activity" } })
      assert.equal("no OPS_EMAIL", alerts.send(fx.conn, ORG, "degraded", "operator"))
      assert.same({}, mailbox("admin@acme.example"))
    end)
  end)
end)
