-- social.providers.mastodon: the Mastodon timeline contract (docs/external-apis.md §5.2),
-- from handwritten responses in the documented shapes.
local json = require "mc.json"
local host = require "mc.host"
local mastodon = require "social.providers.mastodon"

local function response(status, body, headers)
  return { status = status, headers = headers or {}, body = type(body) == "string" and body or json.encode(body),
    json = function(self) return json.decode(self.body) end }
end

local function client(answers, size)
  local sent = {}
  local c = mastodon.new({ base_url = "https://social.test", page_size = size or 2, request = function(opts)
    sent[#sent + 1] = opts
    local res = table.remove(answers, 1)
    if res.status >= 300 then
      return nil, "mastodon: HTTP " .. res.status, res.status == 429 or res.status >= 500, res
    end
    return res
  end })
  return c, sent
end

local function status(id, content, extra)
  local s = { id = id, created_at = "2024-05-01T10:00:00.000Z", content = content,
    url = "https://social.test/@a/" .. id,
    visibility = "public", sensitive = false, spoiler_text = "", favourites_count = 7, reblogs_count = 2,
    account = { id = "1", username = "alice", acct = "alice@fosstodon.org", display_name = "Alice" } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local LINK = '<https://social.test/api/v1/timelines/tag/acme?limit=2&max_id=111>; rel="next", '
  .. '<https://social.test/api/v1/timelines/tag/acme?limit=2&min_id=113>; rel="prev"'

describe("social.providers.mastodon", function()
  it("follows a tag or an account, by what the handle looks like", function()
    local c = client({})
    assert.equal("tag:acme", c:source({ handle = "#Acme" }))
    assert.equal("tag:acme", c:source({ handle = "acme" }))
    assert.equal("acct:alice@fosstodon.org", c:source({ handle = "@Alice@Fosstodon.org" }))
    assert.is_nil(c:source({ handle = "a b" }))
    assert.is_nil(c:source({ handle = "../../admin" }))
  end)

  it("reads a tag timeline page: HTML to text, likes and boosts, the next page from Link", function()
    local c, sent = client({ response(200, { status("113", "<p>Hi &amp; bye</p>"), status("111", "<p>x</p>",
      { spoiler_text = "CW" }) }, { link = LINK, ["x-ratelimit-remaining"] = "299",
      ["x-ratelimit-reset"] = "2024-05-01T10:05:00.000000Z" }) })
    local res = assert(c:fetch("tag:acme", { since_id = "100" }))
    assert.equal("https://social.test/api/v1/timelines/tag/acme", sent[1].url)
    assert.same({ limit = "2", since_id = "100" }, sent[1].query)
    assert.same({ id = "113", text = "Hi & bye", author = "alice@fosstodon.org", posted_at = "2024-05-01T10:00:00.000Z",
      likes = 7, retweets = 2, url = "https://social.test/@a/113" }, res.posts[1])
    assert.equal("CW\n\nx", res.posts[2].text)
    assert.equal("111", res.next.max_id)
    assert.same({ remaining = 299, reset = 1714557900 }, res.rate)
  end)

  it("pages on with max_id and the same since_id; a short page is the last", function()
    local c, sent = client({ response(200, { status("110", "<p>old</p>") }, { link = LINK }) })
    local res = assert(c:fetch("tag:acme", { since_id = "100" }, { max_id = "111" }))
    assert.same({ limit = "2", since_id = "100", max_id = "111" }, sent[1].query)
    assert.is_nil(res.next)
  end)

  it("resumes an unfinished stretch below until_id", function()
    local c, sent = client({ response(200, "[]") })
    local res = assert(c:fetch("tag:acme", { since_id = "100", until_id = "150" }))
    assert.equal("150", sent[1].query.max_id)
    assert.same({}, res.posts)
  end)

  it("looks an account up once, then reads its statuses without boosts", function()
    local c, sent = client({ response(200, { id = "109", username = "alice", acct = "alice@fosstodon.org" }),
      response(200, { status("120", "<p>a</p>"), status("119", "<p>b</p>") }, { link = LINK }),
      response(200, { status("118", "<p>c</p>") }) })
    local res = assert(c:fetch("acct:alice@fosstodon.org", {}))
    assert.equal("https://social.test/api/v1/accounts/lookup", sent[1].url)
    assert.same({ acct = "alice@fosstodon.org" }, sent[1].query)
    assert.equal("https://social.test/api/v1/accounts/109/statuses", sent[2].url)
    assert.equal("true", sent[2].query.exclude_reblogs)
    res = assert(c:fetch("acct:alice@fosstodon.org", {}, res.next))
    assert.equal(3, #sent) -- no second lookup
    assert.equal("111", sent[3].query.max_id)
    assert.equal("c", res.posts[1].text)
  end)

  it("answers a 429 as rate limited until X-RateLimit-Reset", function()
    local reset = math.floor(host.time()) + 120
    local c = client({ response(429, { error = "Too many requests" }, { ["x-ratelimit-remaining"] = "0",
      ["x-ratelimit-reset"] = os.date("!%Y-%m-%dT%H:%M:%S.000000Z", reset) }) })
    local res, _, failure = c:fetch("tag:acme", {})
    assert.is_nil(res)
    assert.same({ rate_limited = true, reset = reset }, failure)
  end)

  it("takes only max_id from Link, never the server's URL", function()
    assert.equal("5", mastodon.next_max_id('<https://evil.example/x?max_id=5>; rel="next"'))
    assert.is_nil(mastodon.next_max_id('<https://social.test/x?min_id=5>; rel="prev"'))
    assert.is_nil(mastodon.next_max_id('<https://social.test/x?max_id=abc>; rel="next"'))
    assert.is_nil(mastodon.next_max_id(nil))
  end)

  it("refuses a 404 for an unknown tag as not retryable, and a status without an id", function()
    local c = client({ response(404, { error = "Record not found" }), response(200, { { content = "x" } }) })
    assert.same({ retryable = false }, select(3, c:fetch("tag:nope", {})))
    assert.same({ nil, "mastodon: status without a valid id", { retryable = false } }, { c:fetch("tag:acme", {}) })
  end)
end)
