-- watch.judge: the verdicts of the health watch on one reading of a connection.
local judge = require "watch.judge"

local NOW = 1796597343 -- 2026-12-06T22:49:03Z
local HOUR = 3600

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

local function mapping(name, state, polled, extra)
  local m = { object_name = name, state = state, state_description = "OK",
    counts = { db = 3, sf = 3, pending = 0, errors = 0 },
    times = { sf_poll = polled and iso(polled) or mc.null, db_poll = mc.null } }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

local function conn(state, mappings) return { state = state, mappings = mappings } end

local function kinds(seen)
  local out = {}
  for _, p in ipairs(seen.problems) do out[#out + 1] = p.kind end
  return table.concat(out, ",")
end

describe("watch.judge", function()
  it("reads Connect's ISO times as UTC epoch seconds, with fractions and offsets", function()
    assert.equal(NOW, judge.epoch("2026-12-06T22:49:03Z"))
    assert.equal(NOW, judge.epoch("2026-12-06T22:49:03.123456Z"))
    assert.equal(NOW, judge.epoch("2026-12-06T23:49:03+01:00"))
    assert.equal(NOW, judge.epoch("2026-12-06T21:49:03-0100"))
    assert.equal(0, judge.epoch("1970-01-01T00:00:00Z"))
    assert.equal(951782400, judge.epoch("2000-02-29T00:00:00Z"))
    assert.is_nil(judge.epoch("yesterday"))
    assert.is_nil(judge.epoch(mc.null))
  end)

  it("finds nothing wrong with a synced, polling connection, and records what it saw", function()
    local seen = judge.read(conn("IDLE", { mapping("Account", "DATA_SYNCED", NOW - 60),
      mapping("Contact", "POLLING_SF_CHANGES", NOW - 10) }), NOW, HOUR)
    assert.same({}, seen.problems)
    assert.equal("IDLE", seen.connection_state)
    assert.equal(NOW - 10, seen.last_sync)
    assert.equal(2, #seen.mappings)
    assert.same({ db = 3, sf = 3, pending = 0, errors = 0 }, seen.mappings[1].counts)
  end)

  it("names a mapping in an error state with Connect's description", function()
    local seen = judge.read(conn("IDLE", { mapping("Account", "DATA_SYNCED", NOW),
      mapping("Contact", "SYSTEM_ERROR", NOW, { state_description = "Field Contact.Foo__c does not exist" }) }),
      NOW, HOUR)
    assert.equal("mapping", kinds(seen))
    assert.equal("mapping Contact is SYSTEM_ERROR: Field Contact.Foo__c does not exist", seen.problems[1].text)
  end)

  it("asks for authorization when Connect lost it, and the operator when paused or iced", function()
    assert.equal("authorization", kinds(judge.read(conn("NEED_AUTHENTICATION", {}), NOW, HOUR)))
    assert.equal("paused", kinds(judge.read(conn("PAUSED", {}), NOW, HOUR)))
    assert.equal("paused", kinds(judge.read(conn("SYSTEM_ON_ICE", {}), NOW, HOUR)))
    assert.equal("connection", kinds(judge.read(conn("DB_UNAVAILABLE", {}), NOW, HOUR)))
    -- states on the way (an import, a recovery) are not problems
    assert.equal("", kinds(judge.read(conn("IMPORT_CONFIGURATION", { mapping("Account", "INITIAL") }), NOW, HOUR)))
    assert.equal("", kinds(judge.read(conn("RECOVERY", {}), NOW, HOUR)))
  end)

  it("calls a sync stale past the threshold, but says a paused one is paused", function()
    local old = { mapping("Account", "DATA_SYNCED", NOW - 2 * HOUR) }
    local seen = judge.read(conn("IDLE", old), NOW, HOUR)
    assert.equal("stale", kinds(seen))
    assert.matches("no sync activity for 120 minutes", seen.problems[1].text)
    assert.equal("", kinds(judge.read(conn("IDLE", old), NOW, 3 * HOUR)))
    assert.equal("paused", kinds(judge.read(conn("PAUSED", old), NOW, HOUR)))
    -- no times reported at all: nothing to judge staleness by
    assert.equal("", kinds(judge.read(conn("IDLE", { mapping("Account", "DATA_SYNCED") }), NOW, HOUR)))
  end)
end)
