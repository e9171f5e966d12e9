-- social.tables.inspect and accounts against real tenant schemas in a private
-- database (the names are covered in spec/unit/social_cursor_spec.lua).
local tables = require "social.tables"
local pg = require "mc.pg"
local tenant_db = require "support.tenant_db"

local SCHEMA = "salesforce00d5e000000abcdeak"

describe("social.tables", function()
  local tdb, conn
  local names = tables.names(nil)

  setup(function()
    tdb = tenant_db.create("mc_spec_social_tables")
    conn = tdb.conn
  end)
  teardown(function() tdb:drop() end)

  describe("inspect", function()
    it("describes the tweet table's columns, their lengths, the unique tweet id and the accounts query", function()
      tdb:tenant(SCHEMA, { text_len = 280 })
      local t = assert(tables.inspect(conn, SCHEMA, names))
      assert.equal(SCHEMA, t.schema)
      assert.equal('"salesforce00d5e000000abcdeak"."tweet__c"', t.tweet) -- always quoted
      assert.same({ name = "text__c", max_len = 280, type = "character varying" }, t.cols.text)
      assert.same({ name = "tweet_id__c", max_len = 255, type = "character varying" }, t.cols.ext)
      assert.same({ name = "posted_at__c", type = "timestamp without time zone" }, t.cols.posted_at)
      assert.same({ name = "likes__c", type = "double precision" }, t.cols.likes)
      assert.is_true(t.unique_ext)
      assert.equal('SELECT sfid, name, "twitter_handle__c" AS handle FROM "salesforce00d5e000000abcdeak"."account" '
        .. [[WHERE sfid IS NOT NULL AND coalesce("twitter_handle__c", '') <> '' ]]
        .. [[AND isdeleted IS NOT TRUE ORDER BY sfid]],
        t.account_sql)
    end)

    it("leaves out the optional columns a tenant's mapping does not have", function()
      tdb:tenant(SCHEMA, { drop = { "likes__c", "retweets__c", "author_username__c", "account__c", "posted_at__c" } })
      local t = assert(tables.inspect(conn, SCHEMA, names))
      local keys = {}
      for k in pairs(t.cols) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.same({ "ext", "text" }, keys)
      assert.is_nil(t.cols.text.max_len) -- a text column has no length
    end)

    it("finds the namespaced tables and columns", function()
      tdb:tenant("ns_tenant", { ns = "hcpoc" })
      local t = assert(tables.inspect(conn, "ns_tenant", tables.names("hcpoc")))
      assert.equal('"ns_tenant"."hcpoc__tweet__c"', t.tweet)
      assert.equal("hcpoc__tweet_id__c", t.cols.ext.name)
      assert.matches('"hcpoc__twitter_handle__c" AS handle', t.account_sql, 1, true)
    end)

    it("says unique_ext = false without a unique index on the tweet id alone", function()
      tdb:tenant(SCHEMA, { unique = false })
      assert.is_false(assert(tables.inspect(conn, SCHEMA, names)).unique_ext)
      -- a partial or a two-column unique index does not make an upsert key either
      assert(conn:exec("CREATE UNIQUE INDEX p ON " .. SCHEMA .. ".tweet__c (tweet_id__c) WHERE likes__c > 0"))
      assert(conn:exec("CREATE UNIQUE INDEX two ON " .. SCHEMA .. ".tweet__c (tweet_id__c, account__c)"))
      assert(conn:exec("CREATE INDEX plain ON " .. SCHEMA .. ".tweet__c (tweet_id__c)"))
      assert.is_false(assert(tables.inspect(conn, SCHEMA, names)).unique_ext)
    end)

    it("drops the isdeleted filter when the account table has no such column", function()
      tdb:tenant(SCHEMA)
      assert(conn:exec("ALTER TABLE " .. SCHEMA .. ".account DROP COLUMN isdeleted"))
      local t = assert(tables.inspect(conn, SCHEMA, names))
      assert.not_matches("isdeleted", t.account_sql)
    end)

    it("refuses names that are not plain identifiers before any query", function()
      for _, bad in ipairs({ "Salesforce", "a-b", "pg_catalog", 'x"; drop', string.rep("a", 64), "" }) do
        assert.same({ nil, "invalid schema name" }, { tables.inspect(conn, bad, names) })
      end
      local n = tables.names(nil)
      n.tweet = 'tweet"__c'
      assert.same({ nil, 'invalid identifier tweet"__c' }, { tables.inspect(conn, SCHEMA, n) })
    end)

    it("names what is missing: the schema's tables, the handle column, a required tweet column", function()
      assert.same({ nil, "no table no_such_schema.account" }, { tables.inspect(conn, "no_such_schema", names) })
      tdb:tenant(SCHEMA, { no_tweets = true })
      assert.same({ nil, "no table " .. SCHEMA .. ".tweet__c" }, { tables.inspect(conn, SCHEMA, names) })
      tdb:tenant(SCHEMA, { drop = { "text__c" } })
      assert.same({ nil, "no column tweet__c.text__c" }, { tables.inspect(conn, SCHEMA, names) })
      tdb:tenant(SCHEMA)
      assert(conn:exec("ALTER TABLE " .. SCHEMA .. ".account DROP COLUMN twitter_handle__c"))
      assert.same({ nil, "no column account.twitter_handle__c" }, { tables.inspect(conn, SCHEMA, names) })
    end)

    it("passes a database failure on as nil, err", function()
      local c = assert(pg.connect(tdb.url))
      c:close()
      assert.same({ nil, "closed" }, { tables.inspect(c, SCHEMA, names) })
    end)
  end)

  describe("accounts", function()
    it("lists the accounts with a handle, by sfid, leaving out deleted ones, a NULL name as nil", function()
      tdb:tenant(SCHEMA)
      assert(conn:exec([[INSERT INTO salesforce00d5e000000abcdeak.account
        (sfid, name, twitter_handle__c, isdeleted) VALUES
        ('001B', 'Beta', 'beta', false), ('001A', NULL, 'alpha', NULL), ('001C', 'Gone', 'gone', true),
        ('001D', 'Blank', '', false), ('001E', 'None', NULL, false), (NULL, 'Unsynced', 'new', false)]]))
      local t = assert(tables.inspect(conn, SCHEMA, names))
      assert.same({ { sfid = "001A", handle = "alpha" }, { sfid = "001B", name = "Beta", handle = "beta" } },
        tables.accounts(conn, t))
    end)

    it("answers a table gone since inspect with Postgres's error", function()
      tdb:tenant(SCHEMA)
      local t = assert(tables.inspect(conn, SCHEMA, names))
      assert(conn:exec("DROP TABLE " .. SCHEMA .. ".account"))
      local rows, err = tables.accounts(conn, t)
      assert.is_nil(rows)
      assert.matches('relation "salesforce00d5e000000abcdeak.account" does not exist', err, 1, true)
    end)
  end)
end)
