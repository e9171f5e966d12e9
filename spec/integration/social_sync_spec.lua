-- social.sync.run: one tenant's run against a real private database and Redis,
-- with the default tenant hooks (scripts/tenants/default.lua: every account with
-- a handle, on X) and X's recent search replayed in its documented shapes
-- (docs/external-apis.md §5.1). Covers skipping, the tenant lock, paging, the provider's rate
-- limit and the tenant's budget kept in Redis, and failures keeping what was fetched.
local sync = require "social.sync"
local db = require "lib.db"
local jobs = require "mc.jobs"
local host = require "mc.host"
local env_vars = require "support.env_vars"
local redis_db = require "support.redis_db"
local replay = require "support.replay_server"
local tenant_db = require "support.tenant_db"

local ORG, SCHEMA = "00D5e000000AbCdEAK", "salesforce00d5e000000abcdeak"

-- one page of recent search: ids newest first; next = meta.next_token
local function page(ids, next_token)
  local data = {}
  for i, id in ipairs(ids) do
    data[i] = { id = id, text = "post " .. id, author_id = "42", created_at = "2024-01-02T03:04:05.000Z",
      edit_history_tweet_ids = { id }, public_metrics = { like_count = i, retweet_count = 0 } }
  end
  return { data = data, includes = { users = { { id = "42", name = "Acme", username = "acme" } } },
    meta = { result_count = #ids, newest_id = ids[1], oldest_id = ids[#ids], next_token = next_token } }
end

local function rate(remaining, reset)
  return { ["x-rate-limit-remaining"] = tostring(remaining),
    ["x-rate-limit-reset"] = tostring(reset or math.floor(host.time()) + 900) }
end

describe("social.sync", function()
  local tdb, rdb, srv
  local config = env_vars.layered(function()
    return { X_API_URL = srv.url, X_BEARER_TOKEN = "x-token", FORCE_NAMESPACE = false, TENANTS_DIR = false,
      SOCIAL_TENANT_BUDGET = false, SOCIAL_MAX_PAGES = false, SOCIAL_BATCH = false }
  end)
  local function configure(vars) config:set(vars) end

  setup(function()
    tdb = tenant_db.create("mc_spec_social_sync")
    rdb = redis_db.open(26)
    srv = replay.start(27)
  end)
  teardown(function()
    srv:stop()
    rdb:close()
    tdb:drop()
  end)

  local function accounts(...)
    assert(tdb.conn:exec("DELETE FROM " .. SCHEMA .. ".account"))
    for i, handle in ipairs({ ... }) do
      assert(tdb.conn:query("INSERT INTO " .. SCHEMA .. ".account (sfid, name, twitter_handle__c) VALUES ($1, $2, $3)",
        string.format("001%012dAAA", i), "Account " .. i, handle))
    end
  end

  before_each(function()
    configure()
    db.use(tdb.conn)
    jobs.use(rdb.r)
    assert(rdb.r:call("FLUSHDB"))
    srv:reset()
    tdb:org(ORG, { state = "active", schema_name = SCHEMA })
    assert(tdb.conn:exec("DELETE FROM social_cursors"))
    tdb:tenant(SCHEMA)
    accounts("acme")
  end)
  after_each(function()
    db.use(nil)
    jobs.use(nil)
    config:restore()
  end)

  local function stored()
    local out = {}
    local rows = assert(tdb.conn:query("SELECT tweet_id__c FROM " .. SCHEMA .. ".tweet__c ORDER BY tweet_id__c"))
    for i, r in ipairs(rows) do
      out[i] = r.tweet_id__c
    end
    return out
  end

  local function cursor(source)
    return assert(tdb.conn:query("SELECT since_id, until_id, newest_id FROM social_cursors WHERE source = $1",
      source or "acme"))[1]
  end

  local function locked() return rdb.r:call("EXISTS", "social:lock:" .. ORG) == 1 end

  it("skips an org that is not an active tenant, without calling X", function()
    tdb:org(ORG, { state = "received", schema_name = SCHEMA })
    local s = assert(sync.run(ORG))
    assert.same({ "skipped", "not an active tenant" }, { s.status, s.reason })
    assert.equal("skipped", assert(sync.run("00D000000000001AAA")).status)
    assert.same({}, srv:requests())
  end)

  it("skips a tenant whose accounts have no handle, and lets go of the lock", function()
    accounts(" ", "")
    local s = assert(sync.run(ORG))
    assert.same({ "skipped", "no accounts with a handle" }, { s.status, s.reason })
    assert.is_false(locked())
  end)

  it("answers busy while another run holds the tenant, and leaves that run's lock alone", function()
    assert(rdb.r:call("SET", "social:lock:" .. ORG, "other-run", "EX", 60))
    local s = assert(sync.run(ORG))
    assert.same({ "busy", "another run holds the tenant" }, { s.status, s.reason })
    assert.equal("other-run", rdb.r:call("GET", "social:lock:" .. ORG))
  end)

  it("fetches each account's pages, stores the posts and moves the cursor; the next run starts there", function()
    accounts("acme", "@Beta")
    srv:answer(200, page({ "30", "20" }, "p2"), rate(400)):answer(200, page({ "10" }), rate(399))
      :answer(200, page({ "7" }), rate(398))
    local s = assert(sync.run(ORG))
    assert.same({ status = "done", org_id = ORG, accounts = 2, requests = 3, inserted = 4, updated = 0,
                  fetched = 4 }, s)
    assert.same({ "10", "20", "30", "7" }, stored())
    assert.same({ since_id = "30", until_id = mc.null, newest_id = mc.null }, cursor("acme"))
    assert.equal("7", cursor("beta").since_id)
    local reqs = srv:requests()
    assert.equal("/2/tweets/search/recent", reqs[1].path)
    assert.equal("Bearer x-token", reqs[1].headers.authorization)
    assert.equal("(from:acme OR @acme) -is:retweet", reqs[1].query.query)
    assert.equal("p2", reqs[2].query.next_token)
    assert.equal("(from:beta OR @beta) -is:retweet", reqs[3].query.query)
    assert.is_false(locked())

    srv:reset()
    accounts("acme")
    srv:answer(200, page({ "31" }), rate(397))
    assert.equal(1, assert(sync.run(ORG)).inserted)
    assert.equal("30", srv:requests()[1].query.since_id)
  end)

  it("stops at SOCIAL_MAX_PAGES with the rest of the stretch held in the cursor", function()
    configure({ SOCIAL_MAX_PAGES = "1" })
    srv:answer(200, page({ "30", "20" }, "p2"), rate(400))
    local s = assert(sync.run(ORG))
    assert.same({ "done", 1, 2 }, { s.status, s.requests, s.inserted })
    assert.same({ since_id = mc.null, until_id = "20", newest_id = "30" }, cursor())
  end)

  it("defers on a 429 until x-rate-limit-reset, and keeps every worker off X until then", function()
    local reset = math.floor(host.time()) + 300
    srv:answer(200, page({ "30" }, "p2"), rate(5))
      :answer(429, { title = "Too Many Requests", status = 429 }, rate(0, reset))
    local s = assert(sync.run(ORG))
    assert.same({ "deferred", reset, 2, 1 }, { s.status, s.defer_until, s.requests, s.inserted })
    assert.same({ "30" }, stored()) -- the page before the 429 is kept, its stretch held
    assert.same({ since_id = mc.null, until_id = "30", newest_id = "30" }, cursor())
    assert.equal(reset, tonumber(rdb.r:call("GET", "social:rate:x")))
    srv:reset()
    local again = assert(sync.run(ORG))
    assert.same({ "deferred", reset, 0 }, { again.status, again.defer_until, again.requests })
    assert.same({}, srv:requests())
  end)

  it("takes a page that spends the window (remaining 0) and blocks X before the next", function()
    local reset = math.floor(host.time()) + 120
    srv:answer(200, page({ "30" }, "p2"), rate(0, reset))
    local s = assert(sync.run(ORG))
    assert.same({ "deferred", reset, 1, 1 }, { s.status, s.defer_until, s.requests, s.inserted })
  end)

  it("defers at the tenant's budget (SOCIAL_TENANT_BUDGET) until the window's end", function()
    configure({ SOCIAL_TENANT_BUDGET = "1" })
    accounts("acme", "beta")
    srv:answer(200, page({ "30" }), rate(400))
    local s = assert(sync.run(ORG))
    local window_end = (math.floor(host.time() / sync.WINDOW) + 1) * sync.WINDOW
    assert.same({ "deferred", window_end, 1, 2 }, { s.status, s.defer_until, s.requests, s.accounts })
    assert.equal(1, #srv:requests())
  end)

  it("fails on a refused token, keeping the pages fetched before and letting go of the lock", function()
    srv:answer(200, page({ "30" }, "p2"), rate(400))
      :answer(401, { title = "Unauthorized", type = "about:blank", status = 401, detail = "Unauthorized" })
    local s, err = sync.run(ORG)
    assert.is_nil(s)
    assert.equal("x: HTTP 401 Unauthorized", err)
    assert.same({ "30" }, stored())
    assert.is_false(locked())
  end)

  it("fails with the tenant tables' problem when they are not there", function()
    assert(tdb.conn:exec("DROP TABLE " .. SCHEMA .. ".tweet__c"))
    assert.same({ nil, "tenant tables: no table " .. SCHEMA .. ".tweet__c" }, { sync.run(ORG) })
    assert.is_false(locked())
  end)

  it("fails on a Redis it cannot use", function()
    local r = assert(require("mc.redis").connect(rdb.url))
    r:close()
    jobs.use(r)
    assert.same({ nil, "redis: closed" }, { sync.run(ORG) })
  end)
end)
