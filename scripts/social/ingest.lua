-- social.ingest: one batch of posts (one page of one account) into a tenant's
-- tweet table, and the account's cursor, in ONE transaction:
--   COPY the posts into a session-local staging table, INSERT the ones the
--   table does not hold yet (by the external id), UPDATE likes/retweets of the
--   ones it does (only where they changed: every UPDATE of a synced row is a
--   Salesforce API call for Heroku Connect), then move the cursor.
-- With a unique index on the external id (Connect makes one for the mapping's
-- "unique": true) the insert and the update are one INSERT ... ON CONFLICT.
-- So a cursor never runs ahead of committed rows, and a re-run inserts nothing
-- twice, with or without that index (a transaction lock on the table
-- serialises two writers of it).
--   ingest.batch(conn, target, batch) -> inserted, updated | nil, err
--     target: social.tables.inspect's; batch = {org_id, provider, source,
--     account_sfid, posts, cursor = {since_id, until_id, newest_id} (after)}
--   ingest.cursor(conn, org_id, provider, source) -> {since_id, until_id, newest_id}
--   ingest.cursor_after(cursor, posts, done) -> the cursor once posts are stored
local json = require "mc.json"
local pg = require "mc.pg"
local provider = require "social.provider"

local _M = {}

local STAGE = [[CREATE TEMP TABLE IF NOT EXISTS social_stage (
  post_id text, body text, author text, posted_at timestamptz, likes double precision,
  retweets double precision, account text) ON COMMIT DELETE ROWS]]
local STAGE_COLUMNS = { "post_id", "body", "author", "posted_at", "likes", "retweets", "account" }
local STAGE_OF = { ext = "post_id", text = "body", author = "author", posted_at = "posted_at",
  likes = "likes", retweets = "retweets", account = "account" }
local ORDER = { "ext", "text", "account", "author", "posted_at", "likes", "retweets" }

local function null(v) if v == nil then return json.null end return v end

-- The staged expression for a target column: a time stamp column without zone
-- gets UTC wall time (what Connect stores), a length-limited one is cut to fit.
local function staged(key, col)
  local expr = "s." .. STAGE_OF[key]
  if key == "posted_at" and col.type == "timestamp without time zone" then
    return "(" .. expr .. " AT TIME ZONE 'UTC')"
  end
  return expr
end

-- The statements for a target, built once per target (identifiers only, checked
-- by social.tables and quoted here).
local function statements(target)
  if target.sql then return target.sql end
  local cols, exprs, sets, changed, up_sets, up_changed = {}, {}, {}, {}, {}, {}
  for _, key in ipairs(ORDER) do
    local col = target.cols[key]
    if col then
      cols[#cols + 1] = pg.quote_ident(col.name)
      exprs[#exprs + 1] = staged(key, col)
      if key == "likes" or key == "retweets" then
        sets[#sets + 1] = pg.quote_ident(col.name) .. " = " .. staged(key, col)
        changed[#changed + 1] = "t." .. pg.quote_ident(col.name) .. " IS DISTINCT FROM " .. staged(key, col)
        local q = pg.quote_ident(col.name)
        up_sets[#up_sets + 1] = q .. " = EXCLUDED." .. q
        up_changed[#up_changed + 1] = "t." .. q .. " IS DISTINCT FROM EXCLUDED." .. q
      end
    end
  end
  local ext = pg.quote_ident(target.cols.ext.name)
  local sql = {
    lock = "SELECT pg_advisory_xact_lock(hashtext($1))",
    insert = string.format([[INSERT INTO %s (%s)
      SELECT %s FROM social_stage s
      WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE t.%s = s.post_id) ON CONFLICT DO NOTHING]],
      target.tweet, table.concat(cols, ", "), table.concat(exprs, ", "), target.tweet, ext),
  }
  if target.unique_ext then
    -- one statement: new posts inserted, changed metrics updated (xmax = 0 marks an insert)
    sql.upsert = string.format([[WITH w AS (INSERT INTO %s AS t (%s)
      SELECT %s FROM social_stage s
      ON CONFLICT (%s) DO %s RETURNING (t.xmax = 0) AS ins)
      SELECT count(*) FILTER (WHERE ins) AS inserted, count(*) FILTER (WHERE NOT ins) AS updated FROM w]],
      target.tweet, table.concat(cols, ", "), table.concat(exprs, ", "), ext,
      #up_sets > 0 and ("UPDATE SET " .. table.concat(up_sets, ", ") .. " WHERE " .. table.concat(up_changed, " OR "))
        or "NOTHING")
  end
  if #sets > 0 then
    sql.update = string.format([[UPDATE %s t SET %s FROM social_stage s
      WHERE t.%s = s.post_id AND (%s)]], target.tweet, table.concat(sets, ", "), ext,
      table.concat(changed, " OR "))
  end
  target.sql = sql
  return sql
end

-- The staged row of a post: text cleaned and cut to the columns' lengths.
local function stage_row(target, p, account_sfid)
  local text = provider.clean_text(p.text)
  local author = p.author and provider.clean_text(p.author) or nil
  local tcol, acol = target.cols.text, target.cols.author
  text = provider.truncate(text, tcol.max_len)
  if author and acol then author = provider.truncate(author, acol.max_len) end
  return { p.id, text, null(author), null(p.posted_at), null(p.likes), null(p.retweets), null(account_sfid) }
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

function _M.batch(conn, target, b)
  local sql = statements(target)
  local rows = {}
  local seen = {} -- a post twice in one batch (pages shifting under new posts) is staged once
  for _, p in ipairs(b.posts) do
    if not seen[p.id] then
      seen[p.id] = true
      rows[#rows + 1] = stage_row(target, p, b.account_sfid)
    end
  end
  local inserted, updated = 0, 0
  local ok, err = conn:transaction(function()
    local e
    if not target.unique_ext then -- else ON CONFLICT keeps two writers apart
      local _
      _, e = conn:query(sql.lock, target.tweet)
      if e then return nil, e end
    end
    if #rows > 0 then
      local r
      r, e = conn:query(STAGE)
      if not r then return nil, e end
      r, e = conn:copy_in("COPY social_stage (" .. table.concat(STAGE_COLUMNS, ", ") .. ") FROM STDIN", rows)
      if not r then return nil, e end
      if sql.upsert then
        r, e = conn:query(sql.upsert)
        if not r then return nil, e end
        inserted, updated = r[1].inserted, r[1].updated
      else
        r, e = conn:query(sql.insert)
        if not r then return nil, e end
        inserted = r.affected
      end
      if sql.update and not sql.upsert then
        r, e = conn:query(sql.update)
        if not r then return nil, e end
        updated = r.affected
      end
    end
    local c = b.cursor
    local r
    r, e = conn:query(CURSOR_UPSERT, b.org_id, b.provider, b.source, null(c.since_id), null(c.until_id),
      null(c.newest_id), inserted)
    if not r then return nil, e end
    return true
  end)
  if not ok then return nil, "ingest " .. b.source .. ": " .. tostring(err) end
  return inserted, updated
end

return _M
