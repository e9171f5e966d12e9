-- social.ingest: one batch of posts (one page of one account) into a tenant's
-- tweet table, and the account's cursor, in ONE transaction, under a lock on the
-- tweet table (one writer at a time): the posts the table already holds are
-- found by their external id, the new ones are COPYed straight into the table,
-- the known ones get likes/retweets updated only where they changed (every
-- UPDATE of a synced row is a Salesforce API call for Heroku Connect), then the
-- cursor moves. So a cursor never runs ahead of committed rows, and a re-run
-- inserts nothing twice, with or without a unique index on the external id.
--   ingest.batch(conn, target, batch[, app]) -> inserted, updated | nil, err
--     target: social.tables.inspect's; batch = {org_id, provider, source,
--     account_sfid, posts, cursor = {since_id, until_id, newest_id} (after)};
--     app: the app's database, when the tenant's schema lives in another one
--     (TENANT_DATABASES). The cursor then moves in a second transaction, after
--     the posts' commit: a crash between leaves it behind, never ahead, and the
--     re-run finds the posts already there.
--   ingest.cursor(conn, org_id, provider, source) -> {since_id, until_id, newest_id}
--   ingest.cursor_after(cursor, posts, done) -> the cursor once posts are stored
local json = require "mc.json"
local pg = require "mc.pg"
local provider = require "social.provider"

local _M = {}

local ORDER = { "ext", "text", "account", "author", "posted_at", "likes", "retweets" }

local function null(v) if v == nil then return json.null end return v end

-- A post as a row in ORDER: text cleaned and cut to the columns' lengths. A
-- time stamp "...Z" goes as it is: Connect's columns are timestamp without time
-- zone, which keep its UTC wall time (mc.pg sessions run in UTC).
local function stage_row(target, p, account_sfid)
  local text = provider.clean_text(p.text)
  local author = p.author and provider.clean_text(p.author) or nil
  local tcol, acol = target.cols.text, target.cols.author
  text = provider.truncate(text, tcol.max_len)
  if author and acol then author = provider.truncate(author, acol.max_len) end
  -- in ORDER: ext, text, account, author, posted_at, likes, retweets
  return { p.id, text, null(account_sfid), null(author), null(p.posted_at), null(p.likes), null(p.retweets) }
end

local CURSOR_UPSERT = [[INSERT INTO social_cursors AS c
    (org_id, provider, source, since_id, until_id, newest_id, inserted, last_run_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, now())
  ON CONFLICT (org_id, provider, source) DO UPDATE SET since_id = EXCLUDED.since_id,
    until_id = EXCLUDED.until_id, newest_id = EXCLUDED.newest_id,
    inserted = c.inserted + EXCLUDED.inserted, last_run_at = now()]]

function _M.cursor(conn, org_id, prov, source)
  local rows, err = conn:query([[SELECT since_id, until_id, newest_id FROM social_cursors
    WHERE org_id = $1 AND provider = $2 AND source = $3]], org_id, prov, source)
  if not rows then return nil, err end
  local r = rows[1] or {}
  local function v(x) if x == nil or x == json.null then return nil end return x end
  return { since_id = v(r.since_id), until_id = v(r.until_id), newest_id = v(r.newest_id) }
end

local function max_id(a, b)
  if not a then return b end
  if not b then return a end
  return provider.id_less(a, b) and b or a
end

-- cursor_after(cursor, posts, done): posts is a page of the stretch the cursor
-- describes (newest first, any order accepted); done = no further page.
function _M.cursor_after(cursor, posts, done)
  local newest, oldest = cursor.newest_id, nil
  for _, p in ipairs(posts) do
    newest = max_id(newest, p.id)
    if not oldest or provider.id_less(p.id, oldest) then oldest = p.id end
  end
  if done then
    return { since_id = max_id(cursor.since_id, newest) }
  end
  return { since_id = cursor.since_id, until_id = oldest or cursor.until_id, newest_id = newest }
end

-- The tweet table's columns in ORDER that exist, and the statements that
-- probe for known posts and update their metrics (built once per target).
local function direct(target)
  if target.direct then return target.direct end
  local ext = pg.quote_ident(target.cols.ext.name)
  local cols, keys, sets, changed = {}, {}, {}, {}
  for i, key in ipairs(ORDER) do
    local col = target.cols[key]
    if col then
      cols[#cols + 1] = pg.quote_ident(col.name)
      keys[#keys + 1] = i
      if key == "likes" or key == "retweets" then
        local q = pg.quote_ident(col.name)
        sets[#sets + 1] = string.format("%s = (x->>%d)::float8", q, i - 1)
        changed[#changed + 1] = string.format("t.%s IS DISTINCT FROM (x->>%d)::float8", q, i - 1)
      end
    end
  end
  local d = {
    -- plans made for this batch's table as it is now: a generic plan cached
    -- while the table was small probes a grown one by sequential scan
    lock = "SELECT pg_advisory_xact_lock(hashtext($1)), set_config('plan_cache_mode', 'force_custom_plan', true)",
    known = string.format("SELECT %s AS ext FROM %s WHERE %s = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))",
      ext, target.tweet, ext),
    copy = string.format("COPY %s (%s) FROM STDIN", target.tweet, table.concat(cols, ", ")),
    keys = #keys < #ORDER and keys or nil, -- nil: every column exists, rows go as they are
  }
  if #sets > 0 then
    d.update = string.format([[UPDATE %s t SET %s FROM jsonb_array_elements($1::jsonb) x
      WHERE t.%s = x->>0 AND (%s)]], target.tweet, table.concat(sets, ", "), ext, table.concat(changed, " OR "))
  end
  target.direct = d
  return d
end

-- One batch in one transaction, under a lock on the tenant's table (one writer
-- at a time). With a unique index on the external id, the batch is first COPYed
-- straight in (new posts: the common case, as fast as a raw COPY); if the index
-- refuses it, that COPY is rolled back to a savepoint and the careful path runs:
-- the posts the table already holds are found by their external id (an index
-- probe), the new ones are COPYed in, and the known ones get their changed
-- metrics updated. Then the cursor moves.
local function move_cursor(conn, b, inserted)
  local c = b.cursor
  local r, e = conn:query(CURSOR_UPSERT, b.org_id, b.provider, b.source, null(c.since_id), null(c.until_id),
    null(c.newest_id), inserted)
  if not r then return nil, e end
  return true
end

function _M.batch(conn, target, b, app)
  local d = direct(target)
  local rows, ids = {}, {}
  local seen = {} -- a post twice in one batch (pages shifting under new posts) is written once
  for _, p in ipairs(b.posts) do
    if not seen[p.id] then
      seen[p.id] = true
      rows[#rows + 1] = stage_row(target, p, b.account_sfid)
      ids[#ids + 1] = p.id
    end
  end
  local inserted, updated = 0, 0
  local ok, err = conn:transaction(function()
    local r, e = conn:query(d.lock, target.tweet)
    if not r then return nil, e end
    if #rows > 0 and target.unique_ext and not d.keys then
      -- the common case, new posts only: one COPY, which the unique index
      -- refuses whole if any post is already held; then the careful path
      r, e = conn:query("SAVEPOINT social_batch")
      if not r then return nil, e end
      local state
      r, e, state = conn:copy_in(d.copy, rows)
      if r then inserted, rows = r, {} -- all new: nothing left to probe
      elseif state == "23505" then
        r, e = conn:query("ROLLBACK TO SAVEPOINT social_batch")
        if not r then return nil, e end
      else return nil, e end
    end
    if #rows > 0 then
      r, e = conn:query(d.known, json.array(ids))
      if not r then return nil, e end
      local known = {}
      for _, k in ipairs(r) do known[k.ext] = true end
      local fresh, old = {}, {}
      for _, row in ipairs(rows) do
        if known[row[1]] then
          old[#old + 1] = row
        elseif not d.keys then
          fresh[#fresh + 1] = row
        else
          local out = {}
          for n, key in ipairs(d.keys) do out[n] = row[key] end
          fresh[#fresh + 1] = out
        end
      end
      if #fresh > 0 then
        r, e = conn:copy_in(d.copy, fresh)
        if not r then return nil, e end
        inserted = #fresh
      end
      if #old > 0 and d.update then
        r, e = conn:query(d.update, old)
        if not r then return nil, e end
        updated = r.affected
      end
    end
    if app and app ~= conn then return true end
    return move_cursor(conn, b, inserted)
  end)
  if ok and app and app ~= conn then ok, err = move_cursor(app, b, inserted) end
  if not ok then return nil, "ingest " .. b.source .. ": " .. tostring(err) end
  return inserted, updated
end

return _M
