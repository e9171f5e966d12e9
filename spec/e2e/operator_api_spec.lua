-- GET /organizations, the operator's list of tenants, against the real
-- `multiconnect web` and Postgres (database mc_operator_api, Redis db 23):
-- bearer auth, filters, search, sorts, cursor pages that neither skip nor
-- repeat a row, and a 400 naming the parameter for every bad input.
local sfid = require "lib.sfid"
local web_app = require "support.web_app"
local stack = require "support.stack"

local function id(n) return (assert(sfid.to18(string.format("00D5e00000L%04d", n)))) end

describe("GET /organizations", function()
  local app
  local AUTH = { Authorization = "Bearer " .. stack.ADMIN_TOKEN }

  setup(function() app = web_app.start({ name = "mc_operator_api", redis = 23 }) end)
  teardown(function() app:stop() end)
  before_each(function() app:clear() end)

  local function list(query, headers)
    return app:request("GET", "/organizations" .. (query or ""), { headers = headers or AUTH })
  end

  local function ids(res)
    local out = {}
    for i, item in ipairs(res.json.items) do out[i] = item.org_id end
    return out
  end

  it("401 without the operator's bearer token, or with a wrong one", function()
    app:org(id(1))
    local res = list("", {})
    assert.equal(401, res.status)
    assert.equal('Bearer realm="multiconnect"', res.headers["www-authenticate"])
    assert.is_nil(res.json.items)
    assert.equal(401, list("", { Authorization = "Bearer " .. stack.ADMIN_TOKEN .. "x" }).status)
  end)

  it("lists each tenant with its state, step age, last error and next action, newest update first", function()
    app:org(id(1), { org_name = "Old Co", state = "active", age = 300, since = 200 })
    app:org(id(2), { org_name = "Broken Co", state = "failed", failed_step = "app_linked",
      last_error = "heroku: 401 unauthorized", age = 10, since = 65 })
    local res = list()
    assert.equal(200, res.status)
    assert.same({ id(2), id(1) }, ids(res))
    local broken = res.json.items[1]
    assert.same({ "Broken Co", "failed", "app_linked", "heroku: 401 unauthorized", "production" },
      { broken.org_name, broken.state, broken.failed_step, broken.last_error, broken.environment })
    assert.is_true(broken.step_age >= 65 and broken.step_age < 120, tostring(broken.step_age))
    assert.matches("resumes", broken.next_action)
    assert.equal(app.url .. "/organizations/" .. id(2), broken.url)
    assert.equal("nothing: the org is connected (its sync is watched)", res.json.items[2].next_action)
    assert.equal(mc.null, res.json.next_cursor)
    assert.equal(50, res.json.limit)
  end)

  it("filters by state (one, several, repeated) and environment, and searches names and id prefixes", function()
    app:org(id(1), { org_name = "Acme Corp", state = "active" })
    app:org(id(2), { org_name = "Globex", state = "failed", environment = "sandbox" })
    app:org(id(3), { org_name = "Initech 100%", state = "awaiting_app_oauth" })
    local function got(q) local l = ids(list(q)); table.sort(l); return l end
    assert.same({ id(2) }, got("?state=failed"))
    assert.same({ id(1), id(2) }, got("?state=failed,active"))
    assert.same({ id(1), id(3) }, got("?state=active&state=awaiting_app_oauth"))
    assert.same({ id(2) }, got("?environment=sandbox"))
    assert.same({}, got("?environment=sandbox&state=active"))
    assert.same({ id(1) }, got("?q=acme"))                         -- name, any case
    assert.same({ id(3) }, got("?q=100%25"))                       -- % is a character, not a wildcard
    assert.same({ id(2) }, got("?q=" .. id(2):sub(1, 15)))          -- an org id prefix
    assert.same({}, got("?q=5e00000L0002"))                         -- but only a prefix
  end)

  it("sorts by each column either way, org_id breaking ties", function()
    app:org(id(1), { org_name = "Bravo", age = 30 })
    app:org(id(2), { org_name = "Alpha", age = 10 })
    app:org(id(3), { org_name = "Bravo", age = 20 })
    assert.same({ id(2), id(1), id(3) }, ids(list("?sort=org_name")))
    assert.same({ id(3), id(1), id(2) }, ids(list("?sort=-org_name")))
    assert.same({ id(1), id(3), id(2) }, ids(list("?sort=created_at")))
    assert.same({ id(2), id(3), id(1) }, ids(list("?sort=-updated_at")))
  end)

  it("pages with an opaque cursor: every row once, in order, across ties", function()
    for n = 1, 7 do app:org(id(n), { org_name = n <= 4 and "Same" or ("Org " .. n), state = "active" }) end
    local seen, query, pages = {}, "?sort=org_name&limit=3", 0
    repeat
      local res = list(query)
      assert.equal(200, res.status)
      pages = pages + 1
      for _, o in ipairs(ids(res)) do seen[#seen + 1] = o end
      local c = res.json.next_cursor
      query = c ~= mc.null and ("?sort=org_name&limit=3&cursor=" .. c) or nil
    until not query
    assert.equal(3, pages)
    assert.same({ id(5), id(6), id(7), id(1), id(2), id(3), id(4) }, seen)
  end)

  it("refuses a cursor that was edited, or that belongs to other filters or another sort", function()
    for n = 1, 3 do app:org(id(n)) end
    local c = list("?limit=1").json.next_cursor
    assert.equal(200, list("?limit=1&cursor=" .. c).status)
    local edited = c:sub(1, 5) .. (c:sub(6, 6) == "A" and "B" or "A") .. c:sub(7)
    for _, q in ipairs({ "?cursor=" .. edited, "?sort=org_name&cursor=" .. c, "?state=failed&cursor=" .. c,
        "?cursor=nope" }) do
      local res = list(q)
      assert.equal(400, res.status, q)
      assert.equal("cursor", res.json.param)
      assert.matches("^cursor: ", res.json.error)
    end
  end)

  it("400 naming the parameter for each bad one", function()
    local cases = {
      { "?limit=0", "limit", "limit: must be an integer from 1 to 200" },
      { "?limit=201", "limit" }, { "?limit=ten", "limit" },
      { "?state=bogus", "state", "state: unknown state 'bogus'" },
      { "?environment=moon", "environment" },
      { "?sort=password", "sort" }, { "?sort=--org_name", "sort" },
      { "?q=" .. string.rep("x", 101), "q" },
      { "?colour=red", "colour" },
    }
    for _, case in ipairs(cases) do
      local res = list(case[1])
      assert.equal(400, res.status, case[1])
      assert.equal(case[2], res.json.param, case[1])
      if case[3] then assert.equal(case[3], res.json.error) end
    end
  end)
end)
