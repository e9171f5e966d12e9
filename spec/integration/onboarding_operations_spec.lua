-- onboarding.operations, in-process, on a private database and Redis: resume,
-- retry_step, reimport_mapping, resend_mail and offboard, each answering the org's row (its
-- move, its event, the job it queued on queue:default), false and why (a
-- refusal, no such org), or nil and the error (a database failure); offboard
-- also "busy" when another transaction holds the org's row past lock_timeout.
local host = require "mc.host"
local operations = require "onboarding.operations"
local fixture = require "support.onboarding_fixture"

local ORG = "00D5e000000OpErAEA"
local NOBODY = "00D5e000000NoOnEEA"

describe("onboarding.operations", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_operations", redis = 31 })

  local function events() return fx:events(ORG) end

  -- the queued jobs as {class, first arg}
  local function queued()
    local out = {}
    for i, j in ipairs(fx:queued()) do out[i] = { j.class, j.args[1] } end
    return out
  end

  -- every refusal and failure of an operation: nothing written, nothing queued
  local function unchanged(state)
    assert.equal(state, fx:row(ORG).state)
    assert.same({}, events())
    assert.same({}, queued())
  end

  describe("resume", function()
    it("moves a failed org back to its failed step, clears the failure, records who asked, queues the step", function()
      fx:org(ORG, { state = "failed", failed_step = "app_linked", last_error = "boom", attempts = 5,
        progress = { failures = 3 }, due = false })
      local by = { resumed_by = "http", ip = "203.0.113.7" }
      local row = assert(operations.resume(fx.conn, ORG, by))
      assert.same({ "app_linked", "failed", 0, mc.null, mc.null }, { row.state, row.from_state, row.attempts,
        row.last_error, row.failed_step })
      assert.same({}, fx:row(ORG).progress)
      assert.is_true(fx:due_in(ORG) <= 0)
      assert.same({ { "request", "failed", "app_linked", by } }, events())
      assert.same({ { "onboarding.advance", ORG } }, queued())
    end)

    it("a failed org without a failed step starts over at received", function()
      fx:org(ORG, { state = "failed" })
      assert.equal("received", assert(operations.resume(fx.conn, ORG, "console")).state)
      assert.same({ { "request", "failed", "received", { by = "console" } } }, events())
    end)

    it("refuses an org that is not failed, and no such org", function()
      fx:org(ORG, { state = "active" })
      assert.same({ false, "org is active, not failed: nothing to resume" },
        { operations.resume(fx.conn, ORG, "spec") })
      assert.same({ false, "no such org" }, { operations.resume(fx.conn, NOBODY, "spec") })
      unchanged("active")
    end)

    it("a database failure: nil, err", function()
      fx:org(ORG, { state = "failed", failed_step = "received" })
      assert.same({ nil, "closed" }, { operations.resume(fx:closed(), ORG, "spec") })
      unchanged("failed")
    end)
  end)

  describe("retry_step", function()
    it("makes the step due now with a fresh count, notes the request, queues the step; no move", function()
      fx:org(ORG, { state = "app_linked", attempts = 4, due = 600, progress = { patched_at = 1 } })
      local row = assert(operations.retry_step(fx.conn, ORG, "console"))
      assert.same({ "app_linked", 0 }, { row.state, row.attempts })
      assert.is_true(fx:due_in(ORG) <= 0)
      assert.same({ patched_at = 1 }, fx:row(ORG).progress)
      assert.same({ { "request", "app_linked", "app_linked", { by = "console" } } }, events())
      assert.same({ { "onboarding.advance", ORG } }, queued())
    end)

    it("refuses a failed org, final and person states, and no such org", function()
      local cases = {
        failed = "org is failed: resume it instead",
        active = "org is active: no step to retry",
        offboarded = "org is offboarded: no step to retry",
        awaiting_app_oauth = "org is awaiting_app_oauth: no step to retry",
        awaiting_connect_oauth = "org is awaiting_connect_oauth: no step to retry",
      }
      for state, why in pairs(cases) do
        assert(fx.conn:exec("DELETE FROM organizations"))
        fx:org(ORG, { state = state })
        assert.same({ false, why }, { operations.retry_step(fx.conn, ORG, "spec") })
        unchanged(state)
      end
      assert.same({ false, "no such org" }, { operations.retry_step(fx.conn, NOBODY, "spec") })
    end)

    it("refuses when the org moves on between the read and the update", function()
      local org = fx:org(ORG, { state = "received", attempts = 2 })
      -- another process fails the org, holding its row until it commits
      local step = fx:background(string.format([[
        local pg = require "mc.pg"
        local host = require "mc.host"
        local orgs = require "onboarding.orgs"
        local conn = assert(pg.connect())
        assert(conn:transaction(function()
          assert(orgs.transition(conn, %q, "failed", "step", { fields = { last_error = "elsewhere" } }))
          io.stdout:write("locked\n"); io.stdout:flush()
          host.sleep(0.3)
          return true
        end))
      ]], ORG), "locked")
      local row, why = operations.retry_step(fx.conn, ORG, "spec")
      assert.is_true(step:wait(5))
      step:stop()
      assert.same({ false, "org moved on from received" }, { row, why })
      assert.same({ "failed", 2 }, { fx:row(ORG).state, fx:row(ORG).attempts })
      assert.same({ "failure" }, { events()[1][1] }) -- the other process's move only
      assert.equal(1, #events())
      assert.same({}, queued())
      assert.equal(org.id, fx:row(ORG).id)
    end)

    it("a database failure: nil, err", function()
      fx:org(ORG, { state = "received" })
      assert.same({ nil, "closed" }, { operations.retry_step(fx:closed(), ORG, "spec") })
      unchanged("received")
    end)
  end)

  describe("reimport_mapping", function()
    it("moves an active or mappings_imported org back to connect_authorized and queues the import", function()
      for _, case in ipairs({ { "active", "operator" }, { "mappings_imported", "package" } }) do
        local from, mover = case[1], case[2]
        assert(fx.conn:exec("DELETE FROM organizations"))
        assert(fx.r:call("FLUSHDB"))
        fx:org(ORG, { state = from, attempts = 7 })
        local row = assert(operations.reimport_mapping(fx.conn, ORG, { package_upgrade = true }, mover))
        assert.same({ "connect_authorized", from, 0 }, { row.state, row.from_state, row.attempts })
        assert.is_true(fx:due_in(ORG) <= 0)
        assert.same({ { "request", from, "connect_authorized", { package_upgrade = true } } }, events())
        assert.same({ { "onboarding.advance", ORG } }, queued())
      end
    end)

    it("refuses an org still onboarding (its mapping comes when it gets there), and no such org", function()
      fx:org(ORG, { state = "app_linked" })
      assert.same({ false, "org is app_linked: its mapping is imported when onboarding gets there" },
        { operations.reimport_mapping(fx.conn, ORG, "spec") })
      assert.same({ false, "no such org" }, { operations.reimport_mapping(fx.conn, NOBODY, "spec") })
      unchanged("app_linked")
    end)

    it("refuses a mover states.MOVES does not allow", function()
      fx:org(ORG, { state = "active" })
      assert.same({ false, "no move from active to connect_authorized by person: its mapping is imported when "
        .. "onboarding gets there" }, { operations.reimport_mapping(fx.conn, ORG, "spec", "person") })
      unchanged("active")
    end)

    it("a database failure: nil, err", function()
      fx:org(ORG, { state = "active" })
      assert.same({ nil, "closed" }, { operations.reimport_mapping(fx:closed(), ORG, "spec") })
      unchanged("active")
    end)
  end)

  describe("resend_mail", function()
    it("moves an org waiting on its admin back to the step that mails them, and queues it", function()
      for _, case in ipairs({ { "awaiting_app_oauth", "authorize_url_ready" },
          { "awaiting_connect_oauth", "subscriber_updated" } }) do
        local from, to = case[1], case[2]
        assert(fx.conn:exec("DELETE FROM organizations"))
        assert(fx.r:call("FLUSHDB"))
        fx:org(ORG, { state = from, attempts = 2 })
        local row = assert(operations.resend_mail(fx.conn, ORG, { by = "dashboard" }))
        assert.same({ to, from, 0 }, { row.state, row.from_state, row.attempts })
        assert.is_true(fx:due_in(ORG) <= 0)
        assert.same({ { "request", from, to, { by = "dashboard" } } }, events())
        assert.same({ { "onboarding.advance", ORG } }, queued())
      end
    end)

    it("refuses an org that waits on no mail, and no such org", function()
      fx:org(ORG, { state = "app_linked" })
      assert.same({ false, "org is app_linked: it is not waiting on its admin's mail" },
        { operations.resend_mail(fx.conn, ORG, "spec") })
      assert.same({ false, "no such org" }, { operations.resend_mail(fx.conn, NOBODY, "spec") })
      unchanged("app_linked")
    end)

    it("a database failure: nil, err", function()
      fx:org(ORG, { state = "awaiting_app_oauth" })
      assert.same({ nil, "closed" }, { operations.resend_mail(fx:closed(), ORG, "spec") })
      unchanged("awaiting_app_oauth")
    end)
  end)

  describe("offboard", function()
    it("offboards the org with the time, records the uninstall, queues the add-on's deletion", function()
      fx:org(ORG, { state = "mappings_imported" })
      local row = assert(operations.offboard(fx.conn, ORG, { uninstall = true, ip = "203.0.113.7" }))
      assert.same({ "offboarded", "mappings_imported" }, { row.state, row.from_state })
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT", row.offboarded_at)
      assert.is_nil(fx:due_in(ORG)) -- nobody advances an offboarded org
      assert.same({ { "request", "mappings_imported", "offboarded", { uninstall = true, ip = "203.0.113.7" } } },
        events())
      assert.same({ { "onboarding.offboard", ORG } }, queued())
    end)

    it("an org already offboarded comes back as it is, and its deletion is queued again", function()
      fx:org(ORG, { state = "offboarded", offboarded_at = "2024-01-02T03:04:05Z" })
      local row = assert(operations.offboard(fx.conn, ORG, "operator", 100, "operator"))
      assert.same({ "offboarded", nil }, { row.state, row.from_state })
      assert.same({}, events())
      assert.same({ { "onboarding.offboard", ORG } }, queued())
    end)

    it("busy: another transaction holds the row past lock_timeout; nothing written, the timeout not kept", function()
      fx:org(ORG, { state = "app_linked" })
      assert(fx.other:exec("BEGIN"))
      assert(fx.other:query("SELECT 1 FROM organizations WHERE org_id = $1 FOR UPDATE", ORG))
      local started = host.now()
      local row, why = operations.offboard(fx.conn, ORG, { uninstall = true }, 150)
      local took = host.now() - started
      assert(fx.other:exec("ROLLBACK"))
      assert.same({ nil, "busy" }, { row, why })
      assert(took >= 0.14 and took < 2, "waited " .. took .. " s")
      assert.equal("0", assert(fx.conn:query("SHOW lock_timeout"))[1].lock_timeout)
      unchanged("app_linked")
      assert.equal("offboarded", assert(operations.offboard(fx.conn, ORG, { uninstall = true }, 150)).state)
    end)

    it("refuses no such org, and a mover states.MOVES does not allow", function()
      assert.same({ false, "no such org" }, { operations.offboard(fx.conn, NOBODY, "spec") })
      fx:org(ORG, { state = "active" })
      assert.same({ false, "no move from active to offboarded by person" },
        { operations.offboard(fx.conn, ORG, "spec", nil, "person") })
      unchanged("active")
    end)

    it("a database failure: nil, err", function()
      fx:org(ORG, { state = "active" })
      assert.same({ nil, "closed" }, { operations.offboard(fx:closed(), ORG, "spec", 100) })
      unchanged("active")
    end)
  end)
end)
