-- bench/social.lua TENANTS INTERVAL: social ingestion into real tenant tables
-- (made by the sandbox's Connect during onboarding), from the sandbox's X.
-- Run by bench/social. Prints:
--   sync     posts/s of `run jobs:social.tenant` per tenant, fetching included
--   ingest   posts/s of social.ingest in the job's batches (up to SOCIAL_BATCH
--            posts of one account, each with its cursor in one transaction),
--            cursor_after included, as social.sync runs them
--   COPY     posts/s of ONE raw COPY of the same rows (the same values, the
--            same columns) into the same table: no batches, no cursor, no lock
--   per batch  the same raw COPY once per batch (informative: the floor that
--            batching itself sets)
-- Each runs ROUNDS times (default 3), alternating, into the table emptied and
-- vacuumed before each; min / median / max of each, and ingest/COPY of the
-- medians.
local host = require "mc.host"
local json = require "mc.json"
local pg = require "mc.pg"
package.path = host.root .. "/spec/?.lua;" .. host.root .. "/?.lua;" .. package.path
local stack = require "support.stack"
local proc = require "support.process"
local orgs = require "sandbox.orgs"
local x = require "social.providers.x"
local tables = require "social.tables"
local ingest = require "social.ingest"
local config = require "config"

local n, interval = tonumber(arg[1]) or 4, tonumber(arg[2]) or 120
local s = stack.start({ name = "bench_social", app_db = 11, sandbox_db = 12,
  knobs = { x = { post_interval = interval, mention_interval = interval * 1.5, rate_limit = 1000000 } },
  env = { LOG_LEVEL = "warn", SOCIAL_MAX_PAGES = "100000", SOCIAL_TENANT_BUDGET = "1000000" },
  sandbox_env = { WEB_THREADS = "8" } })

local ROUNDS = math.tointeger(tonumber(os.getenv("ROUNDS") or "3"))
assert(ROUNDS and ROUNDS >= 1, "ROUNDS must be a whole number >= 1")
local BATCH = config.get("SOCIAL_BATCH")

-- min, median, max of a list of seconds
local function spread(t)
  table.sort(t)
  local k = #t
  local med = k % 2 == 1 and t[(k + 1) // 2] or (t[k // 2] + t[k // 2 + 1]) / 2
  return t[1], med, t[k]
end

local ok, err = pcall(function()
  local list = {}
  for i = 1, n do
    local o = orgs.synthetic(2000 + i)
    list[i] = o
    assert(s:post_install({ org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username }).status == 202)
  end
  for _, o in ipairs(list) do assert(s:wait_state(o.org_id, "active", 300), o.org_id .. " not active") end

  -- 1. the whole sync, one tenant after another, as the job runs it
  local env = {}
  for k, v in pairs(s.env) do env[k] = v end
  env.X_API_URL, env.X_BEARER_TOKEN = s.sandbox_url .. "/x", "bench"
  local t0, total = host.now(), 0
  for _, o in ipairs(list) do
    local r = proc.mc({ "run", "jobs:social.tenant", json.encode({ o.org_id }) }, { env = env })
    assert(r.code == 0, r.stdout .. r.stderr)
    local schema = "salesforce" .. o.org_id:lower()
    total = total + assert(s.pg:query("SELECT count(*) AS n FROM " .. schema .. ".tweet__c WHERE sfid IS NULL"))[1].n
  end
  local sync_s = host.now() - t0
  print(string.format("tenants: %d, posts per handle: ~%d, posts synced: %d", n, math.floor(total / (n * 2.5)), total))
  print(string.format("sync (fetch from the sandbox + ingest): %.1f s, %.0f posts/s", sync_s, total / sync_s))

  -- 2. ingest vs raw COPY of the same rows, into the first tenant's table
  local o = list[1]
  local schema = "salesforce" .. o.org_id:lower()
  local conn = assert(pg.connect(s.db_url))
  local target = assert(tables.inspect(conn, schema, tables.names(nil)))
  local accounts = assert(tables.accounts(conn, target))
  local client = x.new({ base_url = s.sandbox_url .. "/x", token = "bench" })
  -- the batches the job makes: an account's pages gathered up to SOCIAL_BATCH posts
  local pages, rows = {}, 0
  for _, a in ipairs(accounts) do
    local source = assert(client:source(a))
    local page, batch
    repeat
      local res = assert(client:fetch(source, {}, page))
      if not batch or #batch.posts >= BATCH then
        batch = { source = source, sfid = a.sfid, posts = {} }
        pages[#pages + 1] = batch
      end
      for _, post in ipairs(res.posts) do batch.posts[#batch.posts + 1] = post end
      batch.done = res.next == nil
      rows = rows + #res.posts
      page = res.next
    until not page
  end
  local function empty()
    assert(conn:query("DELETE FROM " .. target.tweet .. " WHERE sfid IS NULL"))
    assert(conn:query("DELETE FROM social_cursors WHERE org_id = $1", o.org_id))
    assert(conn:query("VACUUM ANALYZE " .. target.tweet))
  end
  -- the raw peer: the same values into the same columns, as copy_in takes them
  local COPY = "COPY " .. target.tweet .. " (tweet_id__c, text__c, account__c, author_username__c,"
    .. " posted_at__c, likes__c, retweets__c) FROM STDIN"
  local function raw_rows(p, data)
    for _, post in ipairs(p.posts) do
      data[#data + 1] = { post.id, post.text, p.sfid, post.author or json.null, post.posted_at or json.null,
        post.likes or json.null, post.retweets or json.null }
    end
    return data
  end
  local runs = {
    { name = "ingest", fn = function()
      local cursor, inserted = {}, 0
      for _, p in ipairs(pages) do
        local after = ingest.cursor_after(cursor, p.posts, p.done)
        inserted = inserted + assert(ingest.batch(conn, target, { org_id = o.org_id, provider = "x",
          source = p.source, account_sfid = p.sfid, posts = p.posts, cursor = after }))
        cursor = p.done and {} or after
      end
      assert(inserted == rows, inserted .. " of " .. rows)
    end },
    { name = "copy", fn = function()
      local data = {}
      for _, p in ipairs(pages) do raw_rows(p, data) end
      assert(assert(conn:copy_in(COPY, data)) == rows)
    end },
    { name = "per_batch", fn = function()
      for _, p in ipairs(pages) do assert(conn:copy_in(COPY, raw_rows(p, {}))) end
    end },
  }
  local times = {}
  for _, r in ipairs(runs) do times[r.name] = {} end
  for _ = 1, ROUNDS do
    for _, r in ipairs(runs) do
      empty()
      local t = host.now()
      r.fn()
      local took = host.now() - t
      table.insert(times[r.name], took)
    end
  end
  local med = {}
  local function line(label, name)
    local lo, m, hi = spread(times[name])
    med[name] = m
    print(string.format("%s: %.0f posts/s (median; min %.1f ms, median %.1f ms, max %.1f ms)",
      label, rows / m, lo * 1000, m * 1000, hi * 1000))
  end
  print(string.format("%d posts in %d batches of up to %d (SOCIAL_BATCH), %d rounds alternating:",
    rows, #pages, BATCH, ROUNDS))
  line("ingest", "ingest")
  line("raw COPY of the same rows into the same table", "copy")
  line("raw COPY, one per batch (no cursor, no lock)", "per_batch")
  print(string.format("ingest / raw COPY (medians): %.2f", med.copy / med.ingest))
  conn:close()
end)
s:stop()
if not ok then io.stderr:write("bench/social: ", tostring(err), "\n"); os.exit(1) end
