-- jobs.onboarding.sweep, in-process on a private database and Redis: orgs whose
-- step is overdue by more than ONBOARDING_SWEEP_GRACE are woken (an
-- onboarding.advance each, oldest first); orgs inside the grace, with no step
-- due, or in a state no step advances are left alone; a database or Redis failure
-- fails the job.
local log = require "mc.log"
local redis = require "mc.redis"
local conns = require "mc.conns"
local db = require "lib.db"
local sfid = require "lib.sfid"
local sweep = require "jobs.onboarding.sweep"
local fixture = require "support.onboarding_fixture"

local function org_id(n) return (sfid.to18(string.format("00D5e00000%05d", n))) end

describe("jobs.onboarding.sweep", function()
  -- Redis 8 is shared with handlers_organizations_spec: both empty it before each test
  local fx = fixture.new(_ENV, { db = "mc_spec_sweep", redis = 8 })
  local ctx = { log = log.with({ job = "onboarding.sweep" }) }

  -- perform() -> what it logged, then its results
  local function perform() return fixture.logged(sweep.perform, {}, ctx) end

  local function woken()
    local out = {}
    for i, j in ipairs(fx:queued()) do
      assert.equal("onboarding.advance", j.class)
      out[i] = j.args[1]
    end
    return out
  end

  it("wakes the orgs overdue past the grace, oldest first, and says how many", function()
    fx:org(org_id(1), { state = "received", due = -200 })
    fx:org(org_id(2), { state = "app_linked", due = -900 })
    fx:org(org_id(3), { state = "connect_authorized", due = -121.5 })
    local out, ok = perform()
    assert.is_true(ok)
    assert.same({ org_id(2), org_id(1), org_id(3) }, woken())
    assert.same({}, fx:scheduled()) -- due now, not later
    assert.matches('msg="onboarding sweep woke overdue orgs"', out, 1, true)
    assert.matches("count=3", out, 1, true)
  end)

  it("leaves an org inside the grace, one not yet due, one with no step due; logs nothing", function()
    fx:org(org_id(1), { state = "received", due = -60 })
    fx:org(org_id(2), { state = "app_linked", due = 30 })
    fx:org(org_id(3), { state = "addon_provisioned" })
    assert(fx.conn:query("UPDATE organizations SET next_attempt_at = NULL WHERE org_id = $1", org_id(3)))
    local out, ok = perform()
    assert.is_true(ok)
    assert.same({}, woken())
    assert.equal("", out)
  end)

  it("ONBOARDING_SWEEP_GRACE sets the grace", function()
    fx:org(org_id(1), { state = "received", due = -60 })
    fx.config:set({ ONBOARDING_SWEEP_GRACE = "30" })
    assert.is_true(select(2, perform()))
    assert.same({ org_id(1) }, woken())
  end)

  it("skips the states no step advances, however overdue", function()
    local skipped = { "active", "failed", "offboarded", "awaiting_app_oauth", "awaiting_connect_oauth" }
    for i, state in ipairs(skipped) do fx:org(org_id(i), { state = state, due = -3600 }) end
    fx:org(org_id(9), { state = "mappings_imported", due = -3600 })
    assert.is_true(select(2, perform()))
    assert.same({ org_id(9) }, woken())
  end)

  it("fails the job when Redis fails (a retry wakes them), and when the database fails", function()
    fx:org(org_id(1), { state = "received", due = -200 })
    local closed = assert(redis.connect(fx.rdb.url))
    closed:close()
    conns.use("redis", closed)
    local _, ok, err = perform()
    conns.use("redis", fx.r)
    assert.is_nil(ok)
    assert.matches("closed", err)
    assert.same({}, woken())
    db.use(fx:closed())
    assert.same({ nil, "closed" }, { select(2, perform()) })
  end)
end)
