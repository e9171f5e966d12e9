-- social.ingest.cursor_after and social.tables.names: where a feed stands after
-- a page, and the names Heroku Connect gives the tenant's tables.
local ingest = require "social.ingest"
local tables = require "social.tables"

local function posts(...)
  local out = {}
  for i, id in ipairs({ ... }) do out[i] = { id = id } end
  return out
end

describe("social cursors", function()
  it("move since_id to the newest post once a stretch is done", function()
    assert.same({ since_id = "1000" }, ingest.cursor_after({ since_id = "5" }, posts("1000", "999", "20"), true))
    assert.same({ since_id = "5" }, ingest.cursor_after({ since_id = "5" }, {}, true))
    assert.same({}, ingest.cursor_after({}, {}, true))
  end)

  it("hold an unfinished stretch: since_id stays, the rest is below until_id", function()
    local c = ingest.cursor_after({ since_id = "5" }, posts("1000", "999"), false)
    assert.same({ since_id = "5", until_id = "999", newest_id = "1000" }, c)
    -- the next page of the same stretch (or the next run resuming it)
    c = ingest.cursor_after(c, posts("998", "60"), false)
    assert.same({ since_id = "5", until_id = "60", newest_id = "1000" }, c)
    assert.same({ since_id = "1000" }, ingest.cursor_after(c, posts("59"), true))
  end)

  it("compare ids as numbers, not strings", function()
    assert.same({ since_id = "1000" }, ingest.cursor_after({ since_id = "999" }, posts("1000"), true))
    assert.same({ since_id = "999", until_id = "1000", newest_id = "10000" },
      ingest.cursor_after({ since_id = "999" }, posts("1000", "10000"), false))
  end)
end)

describe("social.tables.names", function()
  it("are Connect's lower-cased API names", function()
    local n = tables.names(nil)
    assert.equal("account", n.account)
    assert.equal("twitter_handle__c", n.handle)
    assert.equal("tweet__c", n.tweet)
    assert.equal("tweet_id__c", n.cols.ext)
    assert.equal("likes__c", n.cols.likes)
  end)

  it("carry the package namespace on custom names only", function()
    local n = tables.names("hcpoc")
    assert.equal("account", n.account)
    assert.equal("hcpoc__twitter_handle__c", n.handle)
    assert.equal("hcpoc__tweet__c", n.tweet)
    assert.equal("hcpoc__text__c", n.cols.text)
    assert.has_error(function() tables.names("a; drop") end)
    assert.is_false(tables.valid_ident("pg_catalog"))
    assert.is_false(tables.valid_ident('x"y'))
  end)
end)
