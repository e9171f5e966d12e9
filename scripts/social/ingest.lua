-- social.ingest: one batch of posts (one page of one account) into a tenant's
-- tweet table, and the account's cursor, in ONE transaction, under a lock on the
-- tweet table (one writer at a time). The common case, new posts into a table
-- with a unique index on the external id, is one query string: the lock, the
-- cursor and a COPY straight into the table (one implicit transaction, two
-- round trips). Anything else, or a batch Postgres refuses that way (a post it
-- already holds, a repeat, text that is not UTF-8), goes the careful way: the
-- posts the table already holds are found by their external id, the new ones
-- are COPYed in, the known ones get likes/retweets updated only where they
-- changed (every UPDATE of a synced row is a Salesforce API call for Heroku
-- Connect), then the cursor moves. So a cursor never runs ahead of committed
-- rows, and a re-run inserts nothing twice, with or without a unique index on
-- the external id.
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

local NULL = json.null
local function null(v) if v == nil then return NULL end return v end
local clean, truncate = provider.clean_text, provider.truncate
local find = string.find

-- rows_of(target, b, careful[, keys]) -> the batch's posts as rows in ORDER
-- (or only the columns `keys` lists: direct()'s d.keys), text
-- cleaned and cut to the columns' lengths. A time stamp "...Z" goes as it is:
-- Connect's columns are timestamp without time zone, which keep its UTC wall
-- time (mc.pg sessions run in UTC). An author is looked at once per batch: a
-- feed's posts share a few.
-- Careful: each id once (pages shifting under new posts can repeat one: the
-- first seen is kept), every text made valid UTF-8 without NUL. Not careful
-- (the fast path's guess, which costs a few C calls a post): every post goes
-- (the unique index refuses a repeat), and a text is looked at only for what
-- copy_in cannot send (NUL) and a length over the column's; invalid UTF-8 is
-- left to Postgres, which checks every COPY's input anyway and refuses the
-- batch (22021), which then goes the careful way. (The providers send clean
-- text: provider.clean_text.)
-- what copy_in cannot send as it is: not a string, a NUL, longer than max
local function unclean(s, max)
  return type(s) ~= "string" or find(s, "\0", 1, true) or (max and #s > max)
end

local function rows_of(target, b, careful, keys)
  local tmax, acol = target.cols.text.max_len, target.cols.author
  local amax = acol and acol.max_len
  local sfid = null(b.account_sfid)
  local posts = b.posts
  local rows, n, seen, authors = {}, 0, careful and {} or nil, {}
  for i = 1, #posts do
    local p = posts[i]
    local id = p.id
    if not seen or not seen[id] then
      if seen then seen[id] = true end
      local s = p.text
      if careful or unclean(s, tmax) then s = truncate(clean(s), tmax) end
      local a = p.author
      if a then
        local c = authors[a]
        if not c then
          c = a
          if acol and (careful or unclean(a, amax)) then c = truncate(clean(a), amax) end
          authors[a] = c
        end
        a = c
      else
        a = NULL
      end
      n = n + 1
      -- in ORDER: ext, text, account, author, posted_at, likes, retweets
      local row = { id, s, sfid, a, p.posted_at or NULL, p.likes or NULL, p.retweets or NULL }
      if keys then -- only the columns the table has
        local out = {}
        for k = 1, #keys do out[k] = row[keys[k]] end
        row = out
      end
      rows[n] = row
    end
  end
  return rows
end

local CURSOR_UPSERT = [[INSERT INTO social_cursors AS c
    (org_id, provider, source, since_id, until_id, newest_id, inserted, last_run_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7, now())
  ON CONFLICT (org_id, provider, source) DO UPDATE SET since_id = EXCLUDED.since_id,
    until_id = EXCLUDED.until_id, newest_id = EXCLUDED.newest_id,
    inserted = c.inserted + EXCLUDED.inserted, last_run_at = now()]]

-- The fast path's first statement: the tweet table's lock, then the cursor
-- (string.format: the lock's SELECT, then the values as literals).
local LOCK_CURSOR = [[WITH lock AS (%s)
  INSERT INTO social_cursors AS c (org_id, provider, source, since_id, until_id, newest_id, inserted, last_run_at)
  SELECT %s, %s, %s, %s, %s, %s, %d, now() FROM lock
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
  local id_less = provider.id_less
  for i = 1, #posts do
    local id = posts[i].id
    -- ids of one length (the common case) compare as strings
    if not newest then newest = id
    elseif #id == #newest then if id > newest then newest = id end
    elseif id_less(newest, id) then newest = id end
    if not oldest then oldest = id
    elseif #id == #oldest then if id < oldest then oldest = id end
    elseif id_less(id, oldest) then oldest = id end
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
    fast_lock = string.format("SELECT pg_advisory_xact_lock(hashtext(%s))", pg.quote_literal(target.tweet)),
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

local function move_cursor(conn, b, inserted)
  local c = b.cursor
  local r, e = conn:query(CURSOR_UPSERT, b.org_id, b.provider, b.source, null(c.since_id), null(c.until_id),
    null(c.newest_id), inserted)
  if not r then return nil, e end
  return true
end

-- The common case, new posts only, into a table with a unique index on the
-- external id, is one guess in two round trips: ONE query string, the lock,
-- the cursor (the count is known: the COPY adds every row or fails) and the
-- COPY straight into the table. Postgres runs the statements of one simple
-- query as one implicit transaction: all commit together when the COPY ends,
-- or none (no BEGIN, COMMIT or savepoint: two round trips where the shape
-- with a savepoint took seven).
-- The values go as literals (the simple protocol has no parameters). If
-- Postgres refuses the rows (REFUSALS), nothing was written and this answers
-- nil, REFUSED: the careful path takes the batch.
local REFUSED = {}
-- a post the table holds or a repeat in the batch (unique_violation); a text
-- that is not UTF-8 (character_not_in_repertoire)
local REFUSALS = { ["23505"] = true, ["22021"] = true }

local function literal(v)
  if v == nil or v == NULL then return "NULL" end
  return pg.quote_literal(v)
end

-- The lock, and with the cursors here the cursor counting `inserted` posts:
-- one statement.
local function head(d, b, inserted, same)
  if not same then return d.fast_lock end
  local c = b.cursor
  return string.format(LOCK_CURSOR, d.fast_lock, literal(b.org_id), literal(b.provider), literal(b.source),
    literal(c.since_id), literal(c.until_id), literal(c.newest_id), inserted)
end

local function fast(conn, d, b, rows, same)
  local n, err, state = conn:copy_in(head(d, b, #rows, same) .. ";\n" .. d.copy, rows)
  if n then return n end
  if REFUSALS[state] then return nil, REFUSED end
  return nil, err
end

-- The careful path: under the lock, the posts the table already holds are
-- found by their external id (an index probe), the new ones are COPYed in, the
-- known ones get their changed metrics updated, then the cursor moves.
local function careful(conn, target, d, b, rows, same)
  local inserted, updated = 0, 0
  local ok, err = conn:transaction(function()
    local r, e = conn:query(d.lock, target.tweet)
    if not r then return nil, e end
    if #rows > 0 then
      local ids = {}
      for i, row in ipairs(rows) do ids[i] = row[1] end
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
    if not same then return true end
    return move_cursor(conn, b, inserted)
  end)
  if not ok then return nil, err end
  return inserted, updated
end

-- One batch in one transaction (two when Postgres refuses the fast path's
-- guess: the first then wrote nothing). Then, with the cursors in another
-- database, the cursor moves in a transaction of its own.
function _M.batch(conn, target, b, app)
  local d = direct(target)
  local same = not app or app == conn
  local inserted, updated = nil, 0
  if #b.posts == 0 then
    -- nothing new (most runs): the cursor alone, one statement (atomic as it is)
    if same then
      local ok, err = conn:exec(head(d, b, 0, true))
      if not ok then return nil, "ingest " .. b.source .. ": " .. tostring(err) end
      return 0, 0
    end
    inserted = 0
  elseif target.unique_ext then
    local err
    inserted, err = fast(conn, d, b, rows_of(target, b, false, d.keys), same)
    if not inserted and err ~= REFUSED then return nil, "ingest " .. b.source .. ": " .. tostring(err) end
  end
  if not inserted then
    inserted, updated = careful(conn, target, d, b, rows_of(target, b, true), same)
    if not inserted then return nil, "ingest " .. b.source .. ": " .. tostring(updated) end
  end
  if not same then
    local ok, e = move_cursor(app, b, inserted)
    if not ok then return nil, "ingest " .. b.source .. ": " .. tostring(e) end
  end
  return inserted, updated
end

return _M
