-- jobs.onboarding.advance.perform, in-process, on a private database: when the
-- onboarding code does not load (an edit with a syntax error), the job fails
-- for a retry AND says so on the org's row, where an operator looks.
local log = require "mc.log"
local advance = require "jobs.onboarding.advance"
local fixture = require "support.onboarding_fixture"

local ORG = "00D5e000000AdVnCEA"
local BROKEN = "/srv/app/scripts/onboarding/steps.lua:12: unexpected symbol near 'x'"

describe("jobs.onboarding.advance", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_advance", redis = 15 })
  local ctx = { log = log.with({ job = "onboarding.advance" }) }
  local saved

  before_each(function()
    saved = package.loaded["onboarding.workflow"]
  end)
  after_each(function()
    package.preload["onboarding.workflow"] = nil
    package.loaded["onboarding.workflow"] = saved
  end)

  it("writes a load failure of the onboarding code on the org, and fails for a retry", function()
    fx:org(ORG, { state = "received" })
    package.loaded["onboarding.workflow"] = nil
    package.preload["onboarding.workflow"] = function() error(BROKEN .. "\nstack traceback:\n\t[C]: in ?", 0) end
    local ok, err = advance.perform({ ORG }, ctx)
    assert.is_nil(ok)
    assert.equal(BROKEN, err)
    local row = fx:row(ORG)
    assert.equal("the onboarding code does not load: " .. BROKEN, row.last_error)
    assert.equal("received", row.state) -- nothing moved
  end)

  it("runs the step once the code loads again", function()
    fx:org(ORG, { state = "active" })
    assert.is_true(advance.perform({ ORG }, ctx)) -- idle: nothing to do, but it ran
  end)

  it("refuses args that are not [org_id]", function()
    assert.same({ nil, "onboarding.advance: expected an org id" }, { advance.perform({ 42 }, ctx) })
  end)
end)
