-- social.ingest.batch and cursor against real tenant tables in a private database:
-- the COPY fast path, the careful path (known posts, no unique index, missing
-- columns), cleaning and truncation, and a failure rolling the whole batch back
-- (cursor_after is covered in spec/unit/social_cursor_spec.lua).
local ingest = require "social.ingest"
local tables = require "social.tables"
local tenant_db = require "support.tenant_db"

local ORG, SCHEMA = "00D5e000000AbCdEAK", "salesforce00d5e000000abcdeak"

local function post(id, fields)
  local p = { id = id, text = "post " .. id, author = "acme", posted_at = "2021-11-15T18:49:37.000Z",
    likes = 1, retweets = 0 }
  for k, v in pairs(fields or {}) do p[k] = v end
  return p
end

describe("social.ingest", function()
  local tdb, conn

  setup(function()
    tdb = tenant_db.create("mc_spec_social_ingest")
    conn = tdb.conn
    tdb:org(ORG, { schema_name = SCHEMA })
  end)
  teardown(function() tdb:drop() end)

  before_each(function() assert(conn:exec("DELETE FROM social_cursors")) end)

  local function target(opts)
    tdb:tenant(SCHEMA, opts)
    return assert(tables.inspect(conn, SCHEMA, tables.names(nil)))
  end

  local function batch(t, posts, cursor, source)
    return ingest.batch(conn, t, { org_id = ORG, provider = "x", source = source or "acme", account_sfid = "001A",
      posts = posts, cursor = cursor or { since_id = "100" } })
  end

  local function rows()
    return assert(conn:query("SELECT tweet_id__c AS id, text__c AS text, account__c AS account, "
      .. "author_username__c AS author, posted_at__c AS posted_at, likes__c AS likes, retweets__c AS retweets FROM "
      .. SCHEMA .. ".tweet__c ORDER BY tweet_id__c"))
  end

  local function cursor_row(source)
    return assert(conn:query("SELECT since_id, until_id, newest_id, inserted FROM social_cursors WHERE source = $1",
      source or "acme"))[1]
  end

  describe("cursor", function()
    it("is empty for a source never run, and the stored ids after a batch", function()
      assert.same({}, ingest.cursor(conn, ORG, "x", "acme"))
      local t = target()
      assert.same({ 0, 0 }, { batch(t, {}, { since_id = "5", until_id = "9", newest_id = "12" }) })
      assert.same({ since_id = "5", until_id = "9", newest_id = "12" }, ingest.cursor(conn, ORG, "x", "acme"))
      assert.same({}, ingest.cursor(conn, ORG, "mastodon", "acme")) -- per provider
      -- a batch without posts writes the cursor alone; one Postgres refuses changes nothing
      local n, err = batch(t, {}, { since_id = "x5" })
      assert.is_nil(n)
      assert.matches("^ingest acme: .*social_cursors_since_id_check", err)
      assert.same({ since_id = "5", until_id = "9", newest_id = "12" }, ingest.cursor(conn, ORG, "x", "acme"))
    end)

    it("passes a database failure on", function()
      local c = assert(require("mc.pg").connect(tdb.url))
      c:close()
      assert.same({ nil, "closed" }, { ingest.cursor(c, ORG, "x", "acme") })
    end)
  end)

  describe("batch", function()
    it("with the tenant in another database: posts first, then the cursor in the app's; behind, never ahead", function()
      local t = target()
      local app = assert(require("mc.pg").connect(tdb.url)) -- the app's database, a connection of its own
      local b = { org_id = ORG, provider = "x", source = "acme", account_sfid = "001A",
        posts = { post("21"), post("20") },
        cursor = { since_id = "21" } }
      assert.same({ 2, 0 }, { ingest.batch(conn, t, b, app) })
      assert.same({ since_id = "21", until_id = mc.null, newest_id = mc.null, inserted = 2 }, cursor_row())
      -- the app's database gone after the posts' commit: the posts stay, the cursor stays behind
      app:close()
      b.posts, b.cursor = { post("22") }, { since_id = "22" }
      assert.same({ nil, "ingest acme: closed" }, { ingest.batch(conn, t, b, app) })
      assert.equal(3, #rows())
      assert.equal("21", cursor_row().since_id)
      -- the re-run writes nothing twice and moves it
      assert.same({ 0, 0 }, { batch(t, { post("22") }, { since_id = "22" }) })
      assert.equal(3, #rows())
      assert.equal("22", cursor_row().since_id)
    end)

    it("COPYs new posts in with every column, and moves the cursor in the same transaction", function()
      local t = target()
      assert.same({ 2, 0 }, { batch(t, { post("11", { likes = 20, retweets = 5 }), post("10") }, { since_id = "11" }) })
      local r = rows()
      assert.equal(2, #r)
      assert.same({ id = "11", text = "post 11", account = "001A", author = "acme",
        posted_at = "2021-11-15T18:49:37", -- UTC wall time, no zone
        likes = 20, retweets = 5 }, r[2])
      assert.same({ since_id = "11", until_id = mc.null, newest_id = mc.null, inserted = 2 }, cursor_row())
    end)

    it("on a re-run inserts nothing twice and updates only the metrics that changed", function()
      local t = target()
      assert.same({ 3, 0 }, { batch(t, { post("1"), post("2"), post("3") }) })
      -- 1 unchanged, 2 liked more, 4 new: the unique index refuses the COPY, the careful path runs
      assert.same({ 1, 1 }, { batch(t, { post("1"), post("2", { likes = 9 }), post("4") }) })
      local r = rows()
      assert.same({ "1", "2", "3", "4" }, { r[1].id, r[2].id, r[3].id, r[4].id })
      assert.equal(9, r[2].likes)
      assert.equal(4, cursor_row().inserted) -- counted across batches
    end)

    it("without a unique index, probes for known posts and still inserts nothing twice", function()
      local t = target({ unique = false })
      assert.is_false(t.unique_ext)
      assert.same({ 2, 0 }, { batch(t, { post("1"), post("2") }) })
      assert.same({ 1, 1 }, { batch(t, { post("2", { retweets = 3 }), post("3") }) })
      assert.equal(3, #rows())
    end)

    it("writes a post that comes twice in one batch once", function()
      local t = target()
      assert.same({ 1, 0 }, { batch(t, { post("7"), post("7", { likes = 99 }) }) })
      assert.equal(1, rows()[1].likes) -- the first one seen
      local t2 = target({ unique = false })
      assert.same({ 1, 0 }, { batch(t2, { post("7"), post("7") }) })
    end)

    it("writes only the columns the table has, and updates nothing without metric columns", function()
      local t = target({ drop = { "author_username__c", "likes__c", "retweets__c" } })
      assert.same({ 1, 0 }, { batch(t, { post("1") }) })
      assert.same({ 0, 0 }, { batch(t, { post("1", { likes = 50 }) }) })
      local r = assert(conn:query("SELECT tweet_id__c, text__c, account__c, posted_at__c FROM "
        .. SCHEMA .. ".tweet__c"))
      assert.same({ tweet_id__c = "1", text__c = "post 1", account__c = "001A",
                    posted_at__c = "2021-11-15T18:49:37" }, r[1])
    end)

    it("stores text as Postgres can hold it: NUL dropped, bad UTF-8 replaced, "
      .. "cut to the column by characters", function()
      local t = target({ text_len = 5 })
      assert.same({ 3, 0 }, { batch(t, {
        post("1", { text = "a\0b\xffc" }),
        post("2", { text = "\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}\u{1F600}" }),
        post("3", { text = "'; DROP TABLE x; --", author = string.rep("\u{e9}", 300) }) }) })
      local r = rows()
      assert.equal("ab\u{fffd}c", r[1].text)
      assert.equal(string.rep("\u{1F600}", 5), r[2].text)
      assert.equal("'; DR", r[3].text)
      assert.equal(string.rep("\u{e9}", 255), r[3].author)
    end)

    it("on the fast path leaves text that is not UTF-8 to Postgres, whose refusal sends the batch "
      .. "the careful way, which repairs it", function()
      local t = target()
      assert.is_true(t.unique_ext)
      assert.same({ 2, 0 }, { batch(t, { post("1", { text = "a\xffb", author = "\xfeme" }), post("2") },
        { since_id = "2" }) })
      local r = rows()
      assert.same({ "a\u{fffd}b", "\u{fffd}me" }, { r[1].text, r[1].author })
      assert.equal("post 2", r[2].text)
      assert.same({ since_id = "2", until_id = mc.null, newest_id = mc.null, inserted = 2 }, cursor_row())
    end)

    for _, unique in ipairs({ true, false }) do
      it("leaves neither the rows nor the cursor when a post fails mid-batch ("
        .. (unique and "fast" or "careful") .. " path)", function()
        local t = target({ unique = unique })
        assert.same({ 1, 0 }, { batch(t, { post("1") }, { since_id = "1" }) })
        local n, err = batch(t, { post("3"), post("2", { posted_at = "not a time" }) }, { since_id = "3" })
        assert.is_nil(n)
        assert.matches("^ingest acme: .*not a time", err)
        assert.equal("idle", conn:status()) -- no transaction left open, no lock held
        assert.same({ "1" }, { rows()[1].id, rows()[2] })
        assert.same({ since_id = "1", until_id = mc.null, newest_id = mc.null, inserted = 1 }, cursor_row())
        -- the same connection goes on
        assert.same({ 2, 0 }, { batch(t, { post("3"), post("2") }, { since_id = "3" }) })
        assert.same({ since_id = "3", until_id = mc.null, newest_id = mc.null, inserted = 3 }, cursor_row())
      end)
    end

    it("writes a source with quotes and backslashes into the cursor as it is", function()
      local t = target()
      local source = "o'brien\\'; --"
      assert.same({ 1, 0 }, { batch(t, { post("1") }, { since_id = "1", until_id = nil }, source) })
      assert.same({ since_id = "1", until_id = mc.null, newest_id = mc.null, inserted = 1 }, cursor_row(source))
    end)

    it("waits for another writer of the same table (the lock), and a timeout there leaves nothing", function()
      local t = target()
      local other = assert(require("mc.pg").connect(tdb.url))
      assert(other:exec("BEGIN"))
      assert(other:query("SELECT pg_advisory_xact_lock(hashtext($1))", t.tweet))
      assert(conn:set_timeout(300))
      local n, err = batch(t, { post("1") }, { since_id = "1" })
      assert(conn:set_timeout(0))
      assert.is_nil(n)
      assert.matches("statement timeout", err)
      assert.equal(0, #rows())
      assert.is_nil(cursor_row())
      assert(other:exec("COMMIT"))
      other:close()
      assert.same({ 1, 0 }, { batch(t, { post("1") }, { since_id = "1" }) })
    end)

    it("keeps one tenant's failure from another's batch on the same connection", function()
      local t = target()
      local other_schema = "salesforce00d5e000000xyzwxaq"
      tdb:org("00D5e000000XyZwXAQ", { schema_name = other_schema })
      tdb:tenant(other_schema)
      local t2 = assert(tables.inspect(conn, other_schema, tables.names(nil)))
      assert(conn:exec("DROP TABLE " .. other_schema .. ".tweet__c"))
      local n, err = ingest.batch(conn, t2, { org_id = "00D5e000000XyZwXAQ", provider = "x", source = "globex",
        account_sfid = "001B", posts = { post("1") }, cursor = { since_id = "1" } })
      assert.is_nil(n)
      assert.matches("^ingest globex: .*does not exist", err)
      assert.same({ 2, 0 }, { batch(t, { post("1"), post("2") }, { since_id = "2" }) })
      assert.equal(2, #rows())
      assert.equal("2", cursor_row().since_id)
      assert.is_nil(cursor_row("globex"))
    end)

    it("stores a post without author, time or metrics with NULLs", function()
      local t = target()
      assert.same({ 1, 0 }, { batch(t, { { id = "5", text = "bare" } }) })
      assert.same({ 1, 0 }, { batch(t, { { id = "6", text = mc.null } }) }) -- no text: empty, as the column needs one
      assert.equal("", rows()[2].text)
      assert.same({ id = "5", text = "bare", account = "001A", author = mc.null, posted_at = mc.null, likes = mc.null,
        retweets = mc.null }, rows()[1])
    end)

    it("rolls the posts back with a cursor Postgres refuses, and names the source", function()
      local t = target()
      local n, err = batch(t, { post("1"), post("2") }, { since_id = "not-a-number" }, "acme")
      assert.is_nil(n)
      assert.matches("^ingest acme: ", err)
      assert.matches("social_cursors_since_id_check", err, 1, true)
      assert.equal(0, #rows())
      assert.is_nil(cursor_row())
    end)

    it("rolls back for an org that is not a tenant (foreign key)", function()
      local t = target()
      local n, err = ingest.batch(conn, t, { org_id = "00D000000000000AAA", provider = "x", source = "acme",
        account_sfid = "001A", posts = { post("1") }, cursor = {} })
      assert.is_nil(n)
      assert.matches("^ingest acme: .*foreign key", err)
      assert.equal(0, #rows())
    end)

    it("answers a tweet table dropped since inspect with Postgres's error", function()
      local t = target({ unique = false })
      assert(conn:exec("DROP TABLE " .. SCHEMA .. ".tweet__c"))
      local n, err = batch(t, { post("1") })
      assert.is_nil(n)
      assert.matches('^ingest acme: .*relation "' .. SCHEMA .. '.tweet__c" does not exist', err)
      assert.is_nil(cursor_row())
    end)
  end)
end)
