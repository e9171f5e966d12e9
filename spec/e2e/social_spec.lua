-- Social sync end to end: three orgs onboarded through the real web, worker and
-- sandbox (so their tweet tables are the ones the Connect stand-in made), then
-- social.sync fanned out by the worker and social.tenant run inline, as Heroku
-- Scheduler would, against the sandbox's X. Redis dbs 17 (app) and 18 (sandbox);
-- database mc_social.
local stack = require "support.stack"
local proc = require "support.process"
local json = require "mc.json"
local jobs = require "mc.jobs"
local host = require "mc.host"

local ACME = { org_id = "00D5e000000AbCdEAK", org_name = "Acme", admin_email = "admin@acme.example" }
local GLOBEX = { org_id = "00D5e000000GlBxEAK", org_name = "Globex Corporation", admin_email = "admin@globex.example" }
local INITRODE = { org_id = "00D5e000000InTcEAK", org_name = "Initrode", admin_email = "admin@initrode.example" }

local function schema(org) return "salesforce" .. org.org_id:lower() end

describe("social sync end to end", function()
  local s, x_env

  local function count(org, where, ...)
    local sql = "SELECT count(*) AS n FROM " .. schema(org) .. ".tweet__c" .. (where and (" WHERE " .. where) or "")
    return assert(s.pg:query(sql, ...))[1].n
  end

  local function cursors(org)
    local rows = assert(s.pg:query([[SELECT source, since_id, until_id, newest_id, inserted FROM social_cursors
      WHERE org_id = $1 ORDER BY source]], org.org_id))
    local out = {}
    for _, r in ipairs(rows) do out[r.source] = r end
    return out, #rows
  end

  -- run(org[, env]) -> the tenant job's logged summary {status, inserted, requests, ...}, run inline
  local function run(org, env, args)
    local e = {}
    for k, v in pairs(s.env) do e[k] = v end
    for k, v in pairs(x_env) do e[k] = v end
    for k, v in pairs(env or {}) do e[k] = v end
    local r = proc.mc({ "run", "jobs:social.tenant", json.encode(args or { org.org_id }) }, { env = e })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local line = r.stdout:match("[^\n]*msg=\"social tenant run\"[^\n]*")
    assert(line, "no summary in:\n" .. r.stdout .. r.stderr)
    local out = {}
    for k, v in line:gmatch("(%w+)=(%S+)") do out[k] = tonumber(v) or v end
    return out, r.stdout
  end

  local function sandbox_x_calls()
    local n = 0
    for key, v in pairs(s:sandbox_state()) do
      if key:find(":x:ratelimit:", 1, true) then n = n + tonumber(v) end
    end
    return n
  end

  setup(function()
    s = stack.start({ name = "social", app_db = 17, sandbox_db = 18, worker = false,
      env = { LOG_LEVEL = "info", SOCIAL_MAX_PAGES = "20" } })
    x_env = { X_API_URL = s.sandbox_url .. "/x", X_BEARER_TOKEN = "spec-x-token" }
    s:start_worker(x_env)
    for _, org in ipairs({ ACME, GLOBEX, INITRODE }) do
      assert.equal(202, s:post_install(org).status)
    end
    for _, org in ipairs({ ACME, GLOBEX, INITRODE }) do
      local ok, state = s:wait_state(org.org_id, "active", 120)
      assert(ok, org.org_id .. " ended in " .. tostring(state) .. "\n" .. s:logs())
    end
    -- Initrode's accounts have no handles
    assert(s.pg:query("UPDATE " .. schema(INITRODE) .. ".account SET twitter_handle__c = NULL"))
    jobs.use(s.redis)
  end)
  teardown(function() if s then s:stop() end end)

  it("fans out one job per active tenant; each stores its accounts' posts, "
    .. "the tenant without handles is skipped", function()
    local before = { [ACME.org_id] = count(ACME), [GLOBEX.org_id] = count(GLOBEX) } -- Connect's seeded rows
    local e = {}
    for k, v in pairs(s.env) do e[k] = v end
    local r = proc.mc({ "run", "jobs:social.sync" }, { env = e })
    assert.equal(0, r.code, r.stderr)
    assert.matches("tenants=3", r.stdout)
    local ok = proc.wait_for(function()
      return select(2, s.worker:log():gsub("msg=\"social tenant run\"", "")) >= 3
    end, 60)
    assert(ok, s:logs())
    local log = s.worker:log()
    assert.matches("org_id=" .. INITRODE.org_id
      .. "[^\n]*reason=\"no accounts with a handle\"[^\n]*status=skipped", log)
    assert.equal(0, select(2, cursors(INITRODE)))
    for _, org in ipairs({ ACME, GLOBEX }) do
      local added = count(org) - before[org.org_id]
      assert(added > 300, org.org_name .. " got " .. added .. " posts")
      local c, n = cursors(org)
      assert.equal(3, n) -- one per handle
      local total = 0
      for source, row in pairs(c) do
        assert.equal(json.null, row.until_id, source)
        -- the cursor is the newest post stored for that account
        local newest = assert(s.pg:query([[SELECT max(t.tweet_id__c::numeric)::text AS id FROM ]] .. schema(org)
          .. [[.tweet__c t JOIN ]] .. schema(org) .. [[.account a ON a.sfid = t.account__c
          WHERE lower(a.twitter_handle__c) = $1]], source))[1].id
        assert.equal(newest, row.since_id, source)
        total = total + row.inserted
      end
      assert.equal(added, total)
      -- new rows carry what Salesforce needs: the account, the author, the time, the metrics; no sfid yet
      assert.equal(0, count(org, "sfid IS NULL AND (account__c IS NULL OR author_username__c IS NULL"
        .. " OR posted_at__c IS NULL OR likes__c IS NULL OR retweets__c IS NULL)"))
    end
    assert.equal(0, count(ACME, "tweet_id__c IN (SELECT tweet_id__c FROM " .. schema(ACME)
      .. ".tweet__c GROUP BY 1 HAVING count(*) > 1)"))
  end)

  it("inserts nothing on a re-run, nor when the cursors are lost and every post is fetched again", function()
    local n = count(ACME)
    local again = run(ACME)
    assert.equal("done", again.status)
    assert.equal(0, again.inserted)
    assert.equal(n, count(ACME))
    assert(s.pg:query("DELETE FROM social_cursors WHERE org_id = $1", ACME.org_id))
    local refetch = run(ACME)
    assert(refetch.fetched > 300, "fetched " .. tostring(refetch.fetched))
    assert.equal(0, refetch.inserted)
    assert.equal(n, count(ACME))
  end)

  it("stores hostile text exactly as posted", function()
    local hostile = "Robert'); DROP TABLE tweet__c;-- \"quoted\" \\N \\. tab\there\r\nnew line "
      .. "\u{1F525}\u{1F469}\u{200D}\u{1F4BB} \u{200F}שלום עולם\u{202E}gnp.exe \1\27[31mred\127 <b>&amp;</b>"
    -- posted now: newer than anything the last run saw, so past its cursor (the
    -- sandbox's feeds may have posted meanwhile too: at least this one is new)
    s:knobs({ x = { extra_posts = { { handle = "acme", text = hostile, ago = 0 } } } })
    local res = run(ACME)
    s:knobs({ x = { extra_posts = json.null } })
    assert(res.inserted >= 1, "inserted " .. tostring(res.inserted))
    local rows = assert(s.pg:query("SELECT text__c, author_username__c FROM " .. schema(ACME)
      .. ".tweet__c WHERE text__c LIKE 'Robert%'"))
    assert.equal(1, #rows)
    assert.equal(hostile, rows[1].text__c)
    assert.equal("acme", rows[1].author_username__c)
  end)

  it("advances the cursors: later posts are inserted, and only they are asked for", function()
    local n, before = count(ACME), cursors(ACME)
    s:knobs({ x = { clock_offset = 4 * 3600 } })
    local later = run(ACME)
    s:knobs({ x = { clock_offset = 0 } })
    assert.equal("done", later.status)
    assert(later.inserted > 0 and later.inserted < 30, "inserted " .. tostring(later.inserted))
    assert.equal(later.inserted, later.fetched) -- since_id: nothing old came back
    assert.equal(n + later.inserted, count(ACME))
    for source, row in pairs(cursors(ACME)) do
      assert(#row.since_id > #before[source].since_id or row.since_id > before[source].since_id, source)
    end
  end)

  it("defers the tenant on a 429 until the window resets, without failing or calling again", function()
    s:knobs({ x = { rate_limit = 0, rate_window = 900 } })
    local calls = sandbox_x_calls()
    local first = run(GLOBEX)
    assert.equal("deferred", first.status)
    assert.equal(calls + 1, sandbox_x_calls()) -- one 429, no hammering
    local reset = tonumber(assert(s.redis:call("GET", "social:rate:x")))
    assert(reset > host.time() and reset <= host.time() + 900)
    -- one deferred job, due just after the reset
    local function deferred()
      local out = {}
      local z = assert(s.redis:call("ZRANGE", "schedule", 0, -1, "WITHSCORES"))
      for i = 1, #z, 2 do
        local job = json.decode(z[i])
        if job.class == "social.tenant" then out[#out + 1] = { job = job, at = tonumber(z[i + 1]) } end
      end
      return out
    end
    local d = deferred()
    assert.equal(1, #d)
    assert.same({ GLOBEX.org_id, "deferred" }, d[1].job.args)
    assert(d[1].at > reset and d[1].at < reset + 10)
    -- a second run in the window: deferred again, no request, no second deferred job
    assert.equal("deferred", run(GLOBEX).status)
    assert.equal(calls + 1, sandbox_x_calls())
    assert.equal(1, #deferred())
    -- the window over (the sandbox reset, the mark cleared): the deferred run proceeds
    s:knobs({ x = { rate_limit = 450 } })
    assert(s.redis:call("DEL", "social:rate:x"))
    local resumed = run(GLOBEX, nil, d[1].job.args) -- the deferred job, run now
    assert.equal("done", resumed.status)
    assert.equal(0, s.redis:call("EXISTS", "social:deferred:" .. GLOBEX.org_id))
  end)

  it("keeps each tenant within its request budget", function()
    assert(s.pg:query("DELETE FROM social_cursors WHERE org_id = $1", GLOBEX.org_id))
    -- a fresh window's worth: two requests
    for _, key in ipairs(assert(s.redis:call("KEYS", "social:budget:" .. GLOBEX.org_id .. ":*"))) do
      assert(s.redis:call("DEL", key))
    end
    local calls = sandbox_x_calls()
    local res = run(GLOBEX, { SOCIAL_TENANT_BUDGET = "2" })
    assert.equal("deferred", res.status)
    assert.equal(2, res.requests)
    assert.equal(calls + 2, sandbox_x_calls())
    -- what those two pages brought is kept, and the cursor says where to go on
    local c = cursors(GLOBEX)
    local open = 0
    for _, row in pairs(c) do if row.until_id ~= json.null then open = open + 1 end end
    assert.equal(1, open)
  end)
end)
