-- onboarding.orgs.transition against states.MOVES, on a private database
-- (mc_transitions, migrated by `multiconnect migrate`): every allowed move
-- succeeds and records its event, every other (from, to, by) is refused and
-- writes nothing, and no module but onboarding/orgs.lua writes the state column.
local pg = require "mc.pg"
local host = require "mc.host"
local proc = require "support.process"
local pg_db = require "support.pg_db"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"

local DB = "mc_transitions"
local ORG = "00D000000000001EAA"


local ALL = { "failed", "offboarded" }
for _, s in ipairs(states.ORDER) do ALL[#ALL + 1] = s end
for _, s in ipairs(states.AFTER) do ALL[#ALL + 1] = s end
local BY = { "step", "person", "operator", "package" }

describe("org transitions", function()
  local conn

  setup(function()
    local url = pg_db.create(DB)
    local r = proc.mc({ "migrate" }, { env = { DATABASE_URL = url } })
    assert(r.code == 0, r.stderr)
    conn = assert(pg.connect(url))
    assert(conn:query([[INSERT INTO organizations (org_id, org_name, admin_email)
      VALUES ($1, 'Acme', 'a@acme.test')]], ORG))
  end)

  teardown(function()
    conn:close()
    pg_db.drop(DB)
  end)

  -- the spec puts the org in a state by hand: that is its fixture, not a move
  local function put(state)
    assert(conn:query("UPDATE organizations SET state = $2 WHERE org_id = $1", ORG, state))
    assert(conn:exec("DELETE FROM onboarding_events"))
  end

  local function current()
    return assert(conn:query("SELECT state FROM organizations WHERE org_id = $1", ORG))[1].state
  end

  local function events()
    return assert(conn:query("SELECT from_state, to_state, kind FROM onboarding_events ORDER BY id"))
  end

  it("declares moves between known states by known movers only", function()
    assert.is_true(#states.MOVES > 30)
    for _, m in ipairs(states.MOVES) do
      assert.is_true(states.known(m[1]), tostring(m[1]))
      assert.is_true(states.known(m[2]), tostring(m[2]))
      assert.is_true(#m >= 3)
    end
  end)

  it("makes every allowed move and refuses every other, writing nothing then", function()
    local allowed, refused = 0, 0
    for _, from in ipairs(ALL) do
      for _, to in ipairs(ALL) do
        for _, by in ipairs(BY) do
          put(from)
          local row, why = orgs.transition(conn, ORG, to, by, { details = { spec = true } })
          if states.allowed(from, to, by) then
            allowed = allowed + 1
            assert(row, string.format("%s -> %s by %s: %s", from, to, by, tostring(why)))
            assert.equal(to, row.state)
            assert.equal(from, row.from_state)
            assert.equal(to, current())
            local ev = events()
            assert.equal(1, #ev)
            assert.same({ from, to }, { ev[1].from_state, ev[1].to_state })
          else
            refused = refused + 1
            assert.is_false(row, string.format("%s -> %s by %s was not refused", from, to, by))
            assert.equal(string.format("no move from %s to %s by %s", from, to, by), why)
            assert.equal(from, current())
            assert.equal(0, #events())
          end
        end
      end
    end
    assert.equal(#ALL * #ALL * #BY, allowed + refused)
    assert.is_true(allowed > 50 and refused > 500)
  end)

  it("keeps the happy path a chain of step and person moves", function()
    for i = 1, #states.ORDER - 1 do
      local from, to = states.ORDER[i], states.ORDER[i + 1]
      assert.is_true(states.allowed(from, to, "step") or states.allowed(from, to, "person") or false,
        from .. " -> " .. to)
    end
  end)

  it("lets the health watch degrade and heal an onboarded org, and nothing else move it there", function()
    assert.is_true(states.allowed("active", "degraded", "step"))
    assert.is_true(states.allowed("degraded", "active", "step"))
    for _, by in ipairs({ "person", "operator", "package" }) do
      assert.is_nil(states.allowed("active", "degraded", by))
      assert.is_nil(states.allowed("degraded", "active", by))
    end
    for _, s in ipairs(states.ORDER) do
      if s ~= "active" then assert.is_nil(states.allowed(s, "degraded", "step"), s) end
    end
    -- what an operator or the package may do with an active org, they may with a degraded one
    for to, movers in pairs(states.ALLOWED.active) do
      for by in pairs(movers) do
        if by ~= "step" then
          assert.is_true(states.allowed("degraded", to, by) or false, "degraded -> " .. to .. " by " .. by)
        end
      end
    end
    assert.is_nil(states.allowed("degraded", "failed", "step")) -- a broken sync is not a failed onboarding
  end)

  it("refuses when the org is not where the caller expects, and for no such org", function()
    put("active")
    local row, why = orgs.transition(conn, ORG, "connect_authorized", "operator", { from = "mappings_imported" })
    assert.is_false(row)
    assert.equal("org is active", why)
    assert.equal("active", current())
    row, why = orgs.transition(conn, "00D000000000009EAA", "offboarded", "package")
    assert.is_false(row)
    assert.equal("no such org", why)
  end)

  it("writes the fields, the due time and the event details with the move", function()
    put("connect_authorized")
    local row = assert(orgs.transition(conn, ORG, "failed", "step",
      { fields = { failed_step = "connect_authorized", last_error = "boom" }, details = { error = "boom" } }))
    assert.equal("boom", row.last_error)
    assert.equal(mc.null, row.next_attempt_at) -- nobody advances a failed org
    local ev = assert(conn:query("SELECT kind, details FROM onboarding_events"))[1]
    assert.equal("failure", ev.kind)
    assert.equal("boom", ev.details.error)
    row = assert(orgs.transition(conn, ORG, "connect_authorized", "operator"))
    assert.are_not.equal(mc.null, row.next_attempt_at) -- a step runs there: due now
  end)

  it("joins the caller's transaction, so a rollback takes the move back", function()
    put("received")
    local ok, err = conn:transaction(function()
      assert(orgs.transition(conn, ORG, "addon_provisioned", "step"))
      return nil, "changed my mind"
    end)
    assert.is_nil(ok)
    assert.equal("changed my mind", err)
    assert.equal("received", current())
    assert.equal(0, #events())
  end)

  it("raises on an unknown state or mover (a bug, not an answer)", function()
    assert.has_error(function() orgs.transition(conn, ORG, "nowhere", "step") end)
    assert.has_error(function() orgs.transition(conn, ORG, "active", "robot") end)
    assert.has_error(function() orgs.update(conn, ORG, { state = "active" }) end)
  end)

  it("is the only writer of organizations.state", function()
    -- Every Lua file of the application, the sandbox and the host: none but
    -- onboarding/orgs.lua may UPDATE or INSERT into organizations, or pass
    -- `state` to a write.
    local files = proc.run({ "sh", "-c", "cd " .. host.root .. " && find scripts sandbox core/lua -name '*.lua'" })
    local checked, offenders = 0, {}
    for path in files.stdout:gmatch("[^\n]+") do
      checked = checked + 1
      local f = assert(io.open(host.root .. "/" .. path, "rb"))
      local src = f:read("a"):lower()
      f:close()
      if path ~= "scripts/onboarding/orgs.lua" then
        local flat = src:gsub("%s+", " ")
        if flat:find("update organizations", 1, true) or flat:find("insert into organizations", 1, true)
          or flat:find("update \"organizations\"", 1, true) then
          offenders[#offenders + 1] = path
        end
      end
    end
    assert.is_true(checked > 40)
    assert.same({}, offenders)
  end)
end)
