-- jobs.onboarding.offboard.perform, in-process, on a private database and Redis,
-- against the project's sandbox Heroku: it deletes an offboarded org's add-on
-- (by its saved name, or the name derived from the org) and notes it; leaves a
-- reinstalled org alone; in its "transition" form offboards the org and queues
-- the plain job; waits for a step that holds the org's claim, and fails (for the
-- worker to retry) when that claim is not freed.
local pg = require "mc.pg"
local host = require "mc.host"
local log = require "mc.log"
local db = require "lib.db"
local heroku = require "clients.heroku"
local workflow = require "onboarding.workflow"
local offboard = require "jobs.onboarding.offboard"
local fixture = require "support.onboarding_fixture"

local ORG = "00D5e000000OfFbDEA"
local ADDON = "mc-spec-hc-" .. ORG:lower()

describe("jobs.onboarding.offboard", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_offboard", redis = 15, sandbox = 4,
    knobs = { heroku = { async = false } } })
  local ctx = { log = log.with({ job = "onboarding.offboard" }) }

  local function addons()
    local names = {}
    for i, a in ipairs(fx.sb:get("/__sandbox/heroku/addons")) do names[i] = a.name end
    return names
  end

  local function events() return fx:events(ORG) end

  -- perform(args), and the org's claim free again after it
  local function perform(args)
    local res = table.pack(offboard.perform(args, ctx))
    local row = fx:row(ORG)
    if row then assert.is_true(fx:claimable(row), "the claim is still held") end
    return table.unpack(res, 1, res.n)
  end

  local function addon() assert(heroku.create_addon(ADDON, "HEROKUCONNECT_X")) end

  it("deletes an offboarded org's add-on by its saved name and notes it", function()
    addon()
    fx:org(ORG, { state = "offboarded", addon_name = ADDON })
    assert.is_true(perform({ ORG }))
    assert.same({}, addons())
    assert.same({ { "transition", "offboarded", "offboarded", { addon_deleted = ADDON } } }, events())
  end)

  it("pauses the connection, then deletes the add-on and archives the schema, noting all three", function()
    addon()
    fx.tdb:tenant("salesforce00d5e000000offbdea")
    fx:org(ORG, { state = "offboarded", addon_name = ADDON, schema_name = "salesforce00d5e000000offbdea",
      connection_id = "no-such-connection", region_url = fx.sb.url .. "/connect" })
    assert.is_true(perform({ ORG }))
    assert.same({}, addons())
    local ev = events()
    assert.equal(1, #ev)
    assert.same({ ADDON, true }, { ev[1][4].addon_deleted, ev[1][4].paused })
    assert.matches("^salesforce00d5e000000offbdea_archived_%d+$", ev[1][4].archived)
    local kept = assert(fx.other:query("SELECT 1 FROM pg_namespace WHERE nspname = $1", ev[1][4].archived))
    assert.equal(1, #kept)
    assert(fx.conn:exec("DROP SCHEMA " .. ev[1][4].archived .. " CASCADE"))
  end)

  it("a pause Connect asks to wait for (429, Retry-After): queued again after it, the add-on untouched", function()
    addon()
    fx:org(ORG, { state = "offboarded", addon_name = ADDON, connection_id = "c1",
      region_url = fx.sb.url .. "/connect" })
    fx.sb:knobs({ connect = { fail_next = 1, fail_status = 429, retry_after = 40 } })
    assert.is_true(perform({ ORG }))
    assert.same({ ADDON }, addons())
    local later = fx:scheduled()
    assert.equal(1, #later)
    assert.same({ "onboarding.offboard", ORG }, { later[1].job.class, later[1].job.args[1] })
    assert(later[1]["in"] > 38 and later[1]["in"] <= 40, tostring(later[1]["in"]))
    assert.same({}, events())
  end)

  it("deletes it by the name derived from the org when none was saved, and again when already gone", function()
    addon()
    fx:org(ORG, { state = "offboarded" })
    assert.is_true(perform({ ORG }))
    assert.same({}, addons())
    assert.is_true(perform({ ORG })) -- a 404 is gone already: done
    assert.equal(2, #events())
  end)

  it("leaves a reinstalled org alone, and does nothing for no such org", function()
    addon()
    fx:org(ORG, { state = "received", addon_name = ADDON })
    assert.is_true(perform({ ORG }))
    assert.is_true(perform({ "00D5e000000NoOnEEA" }))
    assert.same({ ADDON }, addons())
    assert.same({}, events())
  end)

  it("fails for retry on Heroku's failure and on a database failure, noting nothing", function()
    addon()
    fx:org(ORG, { state = "offboarded", addon_name = ADDON })
    fx.sb:knobs({ heroku = { fail_next = 1, fail_status = 503 } })
    assert.same({ nil, "heroku: HTTP 503 service_unavailable: The sandbox injected this failure." },
      { perform({ ORG }) })
    db.use(fx:closed())
    assert.same({ nil, "closed" }, { perform({ ORG }) })
    assert.same({ nil, "closed" }, { perform({ ORG, "transition" }) })
    assert.same({ ADDON }, addons())
    assert.same({}, events())
  end)

  it("a delete that raises: re-raised, with the claim released", function()
    fx.config:set({ HEROKU_APP_NAME = false })
    fx:org(ORG, { state = "offboarded", addon_name = ADDON })
    local ok, err = pcall(offboard.perform, { ORG }, ctx)
    assert.is_false(ok)
    assert.matches("HEROKU_APP_NAME is required but not set", err)
    assert.is_true(fx:claimable(fx:row(ORG)))
    assert.same({}, events())
  end)

  describe("the transition form", function()
    it("offboards the org as a deferred uninstall and queues the plain job; the add-on stays for it", function()
      addon()
      fx:org(ORG, { state = "connect_authorized", addon_name = ADDON })
      assert.is_true(perform({ ORG, "transition" }))
      assert.equal("offboarded", fx:row(ORG).state)
      assert.same({ { "request", "connect_authorized", "offboarded", { uninstall = true, deferred = true } } },
        events())
      local queued = fx:queued()
      assert.equal(1, #queued)
      assert.same({ "onboarding.offboard", { ORG } }, { queued[1].class, queued[1].args })
      assert.same({ ADDON }, addons())
      assert.is_true(perform(queued[1].args)) -- that job deletes it
      assert.same({}, addons())
    end)

    it("no such org: done, nothing queued", function()
      assert.is_true(perform({ ORG, "transition" }))
      assert.same({}, fx:queued())
    end)
  end)

  describe("a step of the org still running", function()
    it("waits for the step's claim to be released, then deletes", function()
      addon()
      local org = fx:org(ORG, { state = "offboarded", addon_name = ADDON })
      -- a runner in another process, its step ending half a second on
      local step = fx:background(string.format([[
        local pg = require "mc.pg"
        local host = require "mc.host"
        local workflow = require "onboarding.workflow"
        local conn = assert(pg.connect())
        local org = { id = %d, org_id = %q }
        assert(workflow.claim(conn, org) == true)
        io.stdout:write("claimed\n"); io.stdout:flush()
        host.sleep(0.5)
        workflow.release(conn, org)
        io.stdout:write("released\n"); io.stdout:flush()
        host.sleep(5)
      ]], org.id, ORG), "claimed")
      assert.is_false(fx:claimable(org))
      local started = host.now()
      assert.is_true(perform({ ORG }))
      local took = host.now() - started
      step:stop()
      assert(took >= 0.4 and took < 3, "waited " .. took .. " s")
      assert.same({}, addons())
      assert.equal(1, #events())
    end)

    it("fails for retry when the claim is not freed in time (the session's statement_timeout cuts the wait)", function()
      -- a statement_timeout on the job's connection ends the wait too: the
      -- database's error comes back for the retry
      addon()
      local org = fx:org(ORG, { state = "offboarded", addon_name = ADDON })
      assert.is_true(workflow.claim(fx.other, org))
      local conn = assert(pg.connect(fx.tdb.url))
      assert(conn:exec("SET statement_timeout = '300ms'"))
      db.use(conn)
      local started = host.now()
      local ok, err = offboard.perform({ ORG }, ctx)
      local took = host.now() - started
      workflow.release(fx.other, org)
      conn:close()
      assert.is_nil(ok)
      assert.matches("statement timeout", err)
      assert(took >= 0.29 and took < 3, "waited " .. took .. " s")
      assert.same({ ADDON }, addons())
      assert.same({}, events())
      assert.is_true(fx:claimable(org))
    end)

    it("fails for retry when the claim is not freed within OFFBOARD_STEP_WAIT, saying why", function()
      addon()
      local org = fx:org(ORG, { state = "offboarded", addon_name = ADDON })
      assert.is_true(workflow.claim(fx.other, org))
      fx.config:set({ OFFBOARD_STEP_WAIT = "0.3" })
      local started = host.now()
      local ok, err = perform({ ORG })
      local took = host.now() - started
      workflow.release(fx.other, org)
      assert.is_nil(ok)
      assert.equal("a step of this org is still running", err)
      assert(took >= 0.29 and took < 3, "waited " .. took .. " s")
      assert.same({ ADDON }, addons())
      assert.same({}, events())
      assert.is_true(fx:claimable(org))
    end)
  end)
end)
