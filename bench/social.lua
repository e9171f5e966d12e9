-- bench/social.lua TENANTS INTERVAL: social ingestion into real tenant tables
-- (made by the sandbox's Connect during onboarding), from the sandbox's X.
-- Run by bench/social. Prints:
--   sync     posts/s of `run jobs:social.tenant` per tenant, fetching included
--   ingest   posts/s of social.ingest in the job's batches (up to 1000 posts
--            of one account: COPY to staging, insert the new, update changed
--            metrics, move the cursor, one transaction each)
--   COPY     posts/s of one raw COPY of the same rows into the same table
-- and ingest/COPY. Each of the last two runs 3 times into the emptied table; best kept.
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

local n, interval = tonumber(arg[1]) or 4, tonumber(arg[2]) or 120
local s = stack.start({ name = "bench_social", app_db = 11, sandbox_db = 12,
  knobs = { x = { post_interval = interval, mention_interval = interval * 1.5, rate_limit = 1000000 } },
  env = { LOG_LEVEL = "warn", SOCIAL_MAX_PAGES = "100000", SOCIAL_TENANT_BUDGET = "1000000" },
  sandbox_env = { WEB_THREADS = "8" } })

local function best_of(times, fn)
  local best = math.huge
  for _ = 1, times do best = math.min(best, fn()) end
  return best
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
  -- the batches the job makes: an account's pages gathered up to SOCIAL_BATCH (1000) posts
  local pages, rows = {}, 0
  for _, a in ipairs(accounts) do
    local source = assert(client:source(a))
    local page, batch
    repeat
      local res = assert(client:fetch(source, {}, page))
      if not batch or #batch.posts >= 1000 then
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
  local ingest_s = best_of(3, function()
    empty()
    local t, cursor, inserted = host.now(), {}, 0
    for _, p in ipairs(pages) do
      local after = ingest.cursor_after(cursor, p.posts, p.done)
      inserted = inserted + assert(ingest.batch(conn, target, { org_id = o.org_id, provider = "x", source = p.source,
        account_sfid = p.sfid, posts = p.posts, cursor = after }))
      cursor = p.done and {} or after
    end
    assert(inserted == rows, inserted .. " of " .. rows)
    return host.now() - t
  end)
  local copy_s = best_of(3, function()
    empty()
    local t = host.now()
    local data = {}
    for _, p in ipairs(pages) do
      for _, post in ipairs(p.posts) do
        data[#data + 1] = { post.id, post.text, p.sfid, post.author, post.posted_at, post.likes, post.retweets }
      end
    end
    local c = assert(conn:copy_in("COPY " .. target.tweet .. " (tweet_id__c, text__c, account__c, author_username__c,"
      .. " posted_at__c, likes__c, retweets__c) FROM STDIN", data))
    assert(c == rows)
    return host.now() - t
  end)
  print(string.format("ingest (%d posts in %d batch transactions): %.3f s, %.0f posts/s",
    rows, #pages, ingest_s, rows / ingest_s))
  print(string.format("raw COPY of the same rows into the same table: %.3f s, %.0f posts/s", copy_s, rows / copy_s))
  print(string.format("ingest / raw COPY: %.2f", copy_s / ingest_s))
  conn:close()
end)
s:stop()
if not ok then io.stderr:write("bench/social: ", tostring(err), "\n"); os.exit(1) end
