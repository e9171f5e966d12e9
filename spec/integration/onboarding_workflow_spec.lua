-- onboarding.workflow.advance, in-process, on a private database, with the real
-- `received` step against the project's sandbox Heroku: every way an advance
-- ends ("busy", "idle", a new state, "waiting", "retrying", "failed", "moved
-- on", a raise), what each writes (row, event, next due time, the next job in
-- Redis), and that the org's claim is free again after each.
local workflow = require "onboarding.workflow"
local host = require "mc.host"
local fixture = require "support.onboarding_fixture"

local ORG = "00D5e000000WfLoWEA"
local OTHER = "00D5e000000WfLoXEA"
local SCHEMA = "salesforce" .. ORG:lower() -- the default schema_name hook's answer

describe("onboarding.workflow", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_workflow", redis = 29, sandbox = 30,
    knobs = { heroku = { async = false } } })

  local function addons() return fx.sb:get("/__sandbox/heroku/addons") end

  -- advance(), and the claim free again after it whatever it answered
  local function advance(opts)
    local result, err = workflow.advance(ORG, opts)
    assert.is_true(fx:claimable(fx:row(ORG)), "the claim is still held after " .. tostring(result))
    return result, err
  end

  local function kinds(events)
    local out = {}
    for i, e in ipairs(events) do out[i] = e[1] .. " " .. tostring(e[2]) .. ">" .. e[3] end
    return out
  end

  -- once_claimed(org, code) -> another process that runs code (with `conn`, `orgs`)
  -- as soon as a step holds org's claim
  local function once_claimed(org, code)
    return fx:background(string.format([[
      local pg = require "mc.pg"
      local host = require "mc.host"
      local orgs = require "onboarding.orgs"
      local conn = assert(pg.connect())
      io.stdout:write("ready\n"); io.stdout:flush()
      local deadline = host.time() + 10
      repeat
        local rows = assert(conn:query([=[SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d
          ON d.oid = l.database WHERE d.datname = current_database() AND l.locktype = 'advisory'
          AND l.objid = $1 AND l.objsubid = 2 AND l.granted]=], %d))
        if rows[1].n > 0 then break end
        host.sleep(0.01)
      until host.time() > deadline
    ]], org.id) .. code, "ready")
  end

  local function within(lo, hi, v, what)
    assert(v and v >= lo and v <= hi, string.format("%s: %s not within [%g, %g]", what, tostring(v), lo, hi))
  end

  describe("walks away", function()
    it("busy: another connection holds the org's claim; nothing is run or written", function()
      local org = fx:org(ORG, { state = "received" })
      assert.is_true(workflow.claim(fx.other, org))
      assert.equal("busy", workflow.advance(ORG))
      local row = fx:row(ORG)
      assert.same({ "received", 0 }, { row.state, row.attempts })
      assert.same({}, fx:events(ORG))
      assert.same({}, addons())
      workflow.release(fx.other, org)
      assert.equal("addon_provisioned", advance())
    end)

    it("busy: no such org", function()
      assert.equal("busy", workflow.advance(ORG))
      assert.same({}, fx:queued())
    end)

    it("idle: a final or person state, even forced", function()
      for _, state in ipairs({ "active", "failed", "offboarded", "awaiting_app_oauth", "awaiting_connect_oauth" }) do
        assert(fx.conn:exec("DELETE FROM organizations"))
        fx:org(ORG, { state = state })
        assert.equal("idle", advance(), state)
        assert.equal("idle", advance({ force = true }), state)
        assert.same({ state, 0 }, { fx:row(ORG).state, fx:row(ORG).attempts })
      end
      assert.same({}, fx:queued())
      assert.same({}, fx:scheduled())
    end)

    it("idle: a step not due yet, unless forced", function()
      fx:org(ORG, { state = "received", due = 60 })
      assert.equal("idle", advance())
      assert.same({}, addons())
      assert.equal("received", fx:row(ORG).state)
      assert.equal("addon_provisioned", advance({ force = true }))
    end)
  end)

  describe("settles the step's outcome", function()
    it("done: the move with the step's fields, its event, due now, the next advance queued, announced", function()
      fx:org(ORG, { state = "received", attempts = 3, last_error = "earlier", progress = { failures = 2 } })
      local out, result = fixture.logged(advance)
      assert.equal("addon_provisioned", result)
      local row = fx:row(ORG)
      local addon = addons()[1]
      assert.same({ "addon_provisioned", SCHEMA, addon.name, addon.id, 0, mc.null },
        { row.state, row.schema_name, row.addon_name, row.addon_id, row.attempts, row.last_error })
      assert.same({}, row.progress)
      assert.same({ "transition received>addon_provisioned" }, kinds(fx:events(ORG)))
      within(-1, 0.5, fx:due_in(ORG), "due")
      local queued = fx:queued()
      assert.equal(1, #queued)
      assert.same({ "onboarding.advance", { ORG } }, { queued[1].class, queued[1].args })
      assert.matches('msg="onboarding moved" from=received org_id=' .. ORG .. ' to=addon_provisioned', out, 1, true)
    end)

    it("wait: counts the attempt, notes the first wait once, backs off, keeps progress but failures", function()
      fx.sb:knobs({ heroku = { async = true, provision_delay = 600 } })
      fx:org(ORG, { state = "received", progress = { failures = 2, note = "kept" } })
      assert.equal("waiting", advance())
      local row = fx:row(ORG)
      assert.same({ "received", 1, "kept" }, { row.state, row.attempts, row.progress.note })
      assert.is_nil(row.progress.failures)
      assert.equal(addons()[1].id, row.addon_id) -- the wait's fields are saved
      within(8, 12, fx:due_in(ORG), "first poll") -- POLL_MIN 10 * 1.6^0, +-20%
      local sched = fx:scheduled()
      assert.equal(1, #sched)
      assert.same({ "onboarding.advance", { ORG } }, { sched[1].job.class, sched[1].job.args })
      within(7.5, 12.5, sched[1]["in"], "scheduled")
      assert.equal("waiting", advance({ force = true }))
      assert.equal(2, fx:row(ORG).attempts)
      within(12.8, 19.2, fx:due_in(ORG), "second poll") -- 10 * 1.6^1
      local events = fx:events(ORG)
      assert.same({ "wait received>received" }, kinds(events))
      assert.equal("the add-on is provisioning", events[1][4].reason)
      assert.same({}, fx:queued())
    end)

    it("retryable failure: a retry event, progress.failures counted, last_error, backed off", function()
      fx.sb:knobs({ heroku = { fail_next = 2, fail_status = 503 } })
      fx:org(ORG, { state = "received", progress = { note = "kept" } })
      assert.equal("retrying", advance())
      local row = fx:row(ORG)
      local err = "heroku: HTTP 503 service_unavailable: The sandbox injected this failure."
      assert.same({ "received", 1, 1, "kept", err },
        { row.state, row.attempts, row.progress.failures, row.progress.note, row.last_error })
      within(12.8, 19.2, fx:due_in(ORG), "first retry") -- 10 * 1.6^1
      assert.equal("retrying", advance({ force = true }))
      row = fx:row(ORG)
      assert.same({ 2, 2 }, { row.attempts, row.progress.failures })
      within(20.4, 30.8, fx:due_in(ORG), "second retry") -- 10 * 1.6^2
      local events = fx:events(ORG)
      assert.same({ "retry received>received", "retry received>received" }, kinds(events))
      assert.same({ err, 1 }, { events[1][4].error, events[1][4].attempt })
      within(12.8, 19.2, events[1][4].retry_in, "retry_in")
      assert.equal(2, events[2][4].attempt)
      assert.equal(2, #fx:scheduled())
      assert.equal("addon_provisioned", advance({ force = true })) -- the third try goes through
    end)

    it("waits at least the Retry-After a 429 or 503 names before the retry", function()
      fx.sb:knobs({ heroku = { fail_next = 1, fail_status = 429, retry_after = 120 } })
      fx:org(ORG, { state = "received" })
      assert.equal("retrying", advance())
      local events = fx:events(ORG)
      within(120, 121, events[1][4].retry_in, "retry_in") -- the backoff alone is 12.8..19.2
      within(119, 121, fx:due_in(ORG), "due in")
      assert.equal(1, #fx:scheduled())
      within(119, 121, fx:scheduled()[1]["in"], "scheduled in")
    end)

    it("gives up after ONBOARDING_MAX_ATTEMPTS transient failures: failed, failed_step, no step queued", function()
      fx.config:set({ ONBOARDING_MAX_ATTEMPTS = "2" })
      fx.sb:knobs({ heroku = { fail_next = 1, fail_status = 503 } })
      fx:org(ORG, { state = "received", attempts = 1, progress = { failures = 1 } })
      assert.equal("failed", advance())
      local row = fx:row(ORG)
      local err = "heroku: HTTP 503 service_unavailable: The sandbox injected this failure. (gave up after 2 attempts)"
      assert.same({ "failed", "received", err, 2, mc.null }, { row.state, row.failed_step, row.last_error,
        row.attempts, row.next_attempt_at })
      local events = fx:events(ORG)
      assert.same({ "failure received>failed" }, kinds(events))
      assert.same({ err, "received" }, { events[1][4].error, events[1][4].step })
      -- no next step: only the two failure mails, the admin's and the operator's
      local queued = {}
      for i, j in ipairs(fx:queued()) do queued[i] = j.class .. " " .. table.concat(j.args, " ") end
      assert.same({ "alerts.mail " .. ORG .. " failed admin", "alerts.mail " .. ORG .. " failed operator" }, queued)
      assert.same({}, fx:scheduled())
    end)

    it("permanent failure: failed at once, before any Heroku call", function()
      fx:org(OTHER, { state = "active", schema_name = SCHEMA })
      fx:org(ORG, { state = "received" })
      assert.equal("failed", advance())
      local row = fx:row(ORG)
      assert.same({ "failed", "received", "schema " .. SCHEMA .. " already belongs to org " .. OTHER },
        { row.state, row.failed_step, row.last_error })
      assert.same({}, addons())
      assert.same({ "failure received>failed" }, kinds(fx:events(ORG)))
      assert.same({}, fx:scheduled())
    end)

    it("a step that raises: logged with its traceback, settled as a retryable failure", function()
      fx.config:set({ HEROKU_APP_NAME = false }) -- heroku.addon_name needs it: config.need raises
      fx:org(ORG, { state = "received" })
      local out, result = fixture.logged(advance)
      assert.equal("retrying", result)
      local row = fx:row(ORG)
      assert.equal(1, row.progress.failures)
      assert.matches("HEROKU_APP_NAME is required but not set$", row.last_error)
      assert.not_matches("\n", row.last_error) -- the first line only; the traceback goes to the log
      assert.matches('at=error msg="onboarding step raised"', out, 1, true)
      assert.matches("stack traceback", out, 1, true)
      assert.same({ "retry received>received" }, kinds(fx:events(ORG)))
    end)

    it("moved on: the org changed state while its step ran; the step's outcome is dropped", function()
      fx.sb:knobs({ heroku = { latency = 0.5 } }) -- two calls: a second in the step
      local org = fx:org(ORG, { state = "received" })
      -- an uninstall from another process, as soon as the step holds the claim
      local uninstall = once_claimed(org, string.format([[
        assert(orgs.transition(conn, %q, "offboarded", "package", { details = { uninstall = true } }))
        io.stdout:write("moved\n"); io.stdout:flush()
      ]], ORG))
      local started = host.now()
      assert.equal("moved on", advance())
      assert.is_true(host.now() - started >= 1)
      assert.is_true(uninstall:wait(5))
      assert.matches("moved", uninstall:log(), 1, true)
      uninstall:stop()
      local row = fx:row(ORG)
      assert.same({ "offboarded", mc.null, mc.null, 0 }, { row.state, row.addon_id, row.schema_name, row.attempts })
      assert.same({ "request received>offboarded" }, kinds(fx:events(ORG)))
      assert.equal(1, #addons()) -- created by the step; the offboard job deletes it
      assert.same({}, fx:queued())
      assert.same({}, fx:scheduled())
    end)

    it("moved on by the admin's click while the step ran: the next step is queued all the same", function()
      -- the step mails the link; the admin follows it before the step settles.
      -- The job the click queued meets the held claim and goes ("busy"): unless
      -- the runner queues the next step, the org waits for the sweep.
      fx.sb:knobs({ sendgrid = { latency = 1 } })
      local org = fx:org(ORG, { state = "subscriber_updated", connection_id = "c-1",
        authorize_url = "https://connect.example/authorize" })
      local click = once_claimed(org, string.format([[
        assert(orgs.transition(conn, %q, "connect_authorized", "person", { from = { "subscriber_updated" } }))
        io.stdout:write("clicked " .. tostring(require("onboarding.workflow").advance(%q)) .. "\n")
        io.stdout:flush()
      ]], ORG, ORG))
      assert.equal("moved on", advance())
      assert.is_true(click:wait(5))
      assert.matches("clicked busy", click:log(), 1, true)
      click:stop()
      assert.equal("connect_authorized", fx:row(ORG).state)
      local queued = fx:queued()
      assert.equal(1, #queued)
      assert.same({ "onboarding.advance", { ORG } }, { queued[1].class, queued[1].args })
    end)

    it("a wait past ONBOARDING_WAIT_LIMIT fails the org: gave up waiting", function()
      fx.config:set({ ONBOARDING_WAIT_LIMIT = "60" })
      fx.sb:knobs({ heroku = { async = true, provision_delay = 600 } })
      fx:org(ORG, { state = "received", since = 120 })
      assert.equal("failed", advance())
      local row = fx:row(ORG)
      assert.same({ "failed", "received", "gave up waiting: the add-on is provisioning" },
        { row.state, row.failed_step, row.last_error })
      assert.same({ "failure received>failed" }, kinds(fx:events(ORG)))
    end)

    it("a raise while settling: re-raised, nothing written, the claim released", function()
      -- a row whose progress is not an object (no CHECK forbids it): settling a
      -- failure reads progress.failures and raises
      fx.sb:knobs({ heroku = { fail_next = 1 } })
      local org = fx:org(ORG, { state = "received", progress = 5 })
      local ok, err = pcall(workflow.advance, ORG)
      assert.is_false(ok)
      assert.matches("attempt to index a number value", err)
      assert.is_true(fx:claimable(org))
      local row = fx:row(ORG)
      assert.same({ "received", 0, 5 }, { row.state, row.attempts, row.progress })
      assert.same({}, fx:events(ORG))
    end)

    it("notes a wait that follows a retry in the same state, and clears the retry's last_error", function()
      fx.sb:knobs({ heroku = { fail_next = 1, async = true, provision_delay = 600 } })
      fx:org(ORG, { state = "received" })
      assert.equal("retrying", advance())
      assert.equal("waiting", advance({ force = true }))
      assert.same({ "retry received>received", "wait received>received" }, kinds(fx:events(ORG)))
      assert.equal(mc.null, fx:row(ORG).last_error)
    end)

    it("releases the claim when a malformed ONBOARDING_* setting raises", function()
      fx.config:set({ ONBOARDING_MAX_ATTEMPTS = "many" })
      local org = fx:org(ORG, { state = "received" })
      assert.is_false(pcall(workflow.advance, ORG))
      assert.is_true(fx:claimable(org))
    end)
  end)

  describe("claim", function()
    it("with wait_ms: false once the wait is over, the connection left idle", function()
      local org = fx:org(ORG, { state = "received" })
      assert.is_true(workflow.claim(fx.other, org))
      local started = host.now()
      assert.is_false(workflow.claim(fx.conn, org, 200))
      local took = host.now() - started
      assert(took >= 0.19 and took < 2, "waited " .. took .. " s")
      assert.equal("idle", fx.conn:status())
      workflow.release(fx.other, org)
      assert.is_true(workflow.claim(fx.conn, org, 200))
      assert.is_false(fx:claimable(org)) -- a session lock: it outlived the transaction that took it
      workflow.release(fx.conn, org)
      assert.is_true(fx:claimable(org))
    end)

    it("without wait_ms: false at once when held; nil, err on a closed connection", function()
      local org = fx:org(ORG, { state = "received" })
      assert.is_true(workflow.claim(fx.other, org))
      assert.is_false(workflow.claim(fx.conn, org))
      workflow.release(fx.other, org)
      local closed = fx:closed()
      assert.same({ nil, "closed" }, { workflow.claim(closed, org) })
      assert.same({ nil, "closed" }, { workflow.claim(closed, org, 100) })
    end)
  end)
end)
