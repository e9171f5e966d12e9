-- social.providers.x: the X API v2 recent search contract (docs/external-apis.md §5.1), from
-- handwritten responses in the documented shapes.
local json = require "mc.json"
local host = require "mc.host"
local x = require "social.providers.x"

local function response(status, body, headers)
  return { status = status, headers = headers or {}, body = type(body) == "string" and body or json.encode(body),
    json = function(self) return json.decode(self.body) end }
end

-- a client whose requests are recorded and answered from `answers` in order
local function client(answers)
  local sent = {}
  local c = x.new({ base_url = "https://api.x.test/", token = "tok", page_size = 100, request = function(opts)
    sent[#sent + 1] = opts
    local res = table.remove(answers, 1)
    if res.status >= 300 then return nil, "x: HTTP " .. res.status, res.status == 429 or res.status >= 500, res end
    return res
  end })
  return c, sent
end

local PAGE = {
  data = {
    { id = "1460323737035677699", text = "@acme loving it \u{1F600}",
      edit_history_tweet_ids = { "1460323737035677699" },
      author_id = "2244994945", created_at = "2021-11-15T18:49:37.000Z",
      public_metrics = { retweet_count = 5, reply_count = 1, like_count = 20, quote_count = 0 } },
    { id = "1460323737035677698", text = "Shipping \"today\"", author_id = "42",
      created_at = "2021-11-15T18:49:36.000Z", public_metrics = { retweet_count = 0, like_count = 3 } },
  },
  includes = { users = { { id = "2244994945", name = "X Dev", username = "XDevelopers" },
                         { id = "42", name = "Acme", username = "acme" } } },
  meta = { newest_id = "1460323737035677699", oldest_id = "1460323737035677698", result_count = 2,
           next_token = "b26v89c19zqg8o3f" },
}

describe("social.providers.x", function()
  it("takes a handle with or without @, case-insensitively, and refuses what X would not", function()
    local c = client({})
    assert.equal("acme_inc", c:source({ handle = " @Acme_Inc " }))
    assert.same({ nil, "no handle" }, { c:source({ handle = "" }) })
    assert.same({ nil, "not an X handle: acme) OR (x" }, { c:source({ handle = "acme) OR (x" }) })
    assert.is_nil(c:source({ handle = "sixteen_chars_xx" }))
  end)

  it("asks recent search for the handle's posts and mentions, with the cursor, authors and metrics", function()
    local c, sent = client({ response(200, PAGE,
      { ["x-rate-limit-remaining"] = "449", ["x-rate-limit-reset"] = "1700000900" }) })
    local res = assert(c:fetch("acme", { since_id = "1460000000000000000", until_id = "1470000000000000000" }))
    local q = sent[1].query
    assert.equal("https://api.x.test/2/tweets/search/recent", sent[1].url)
    assert.equal("Bearer tok", sent[1].headers.Authorization)
    assert.equal("(from:acme OR @acme) -is:retweet", q.query)
    assert.equal("1460000000000000000", q.since_id)
    assert.equal("1470000000000000000", q.until_id)
    assert.equal("100", q.max_results)
    assert.is_nil(q.next_token)
    assert.matches("public_metrics", q["tweet.fields"])
    assert.equal("author_id", q.expansions)
    assert.same({ remaining = 449, reset = 1700000900 }, res.rate)
    assert.equal("b26v89c19zqg8o3f", res.next)
    assert.same({ id = "1460323737035677699", text = "@acme loving it \u{1F600}", author = "XDevelopers",
      posted_at = "2021-11-15T18:49:37.000Z", likes = 20, retweets = 5 }, res.posts[1])
    assert.equal("acme", res.posts[2].author)
    assert.equal(3, res.posts[2].likes)
  end)

  it("pages with next_token and ends where meta has none", function()
    local last = { data = { { id = "1", text = "old" } },
                   meta = { result_count = 1, newest_id = "1", oldest_id = "1" } }
    local c, sent = client({ response(200, last) })
    local res = assert(c:fetch("acme", {}, "b26v89c19zqg8o3f"))
    assert.equal("b26v89c19zqg8o3f", sent[1].query.next_token)
    assert.is_nil(res.next)
    assert.same({ id = "1", text = "old" }, res.posts[1]) -- default fields only: no author, time or metrics
  end)

  it("reads an empty result (no data) as no posts", function()
    local c = client({ response(200, { meta = { result_count = 0 } }) })
    local res = assert(c:fetch("acme", { since_id = "5" }))
    assert.same({}, res.posts)
    assert.is_nil(res.next)
  end)

  it("answers a 429 as rate limited until x-rate-limit-reset", function()
    local reset = math.floor(host.time()) + 300
    local c = client({ response(429, { title = "Too Many Requests", detail = "Too Many Requests", type = "about:blank",
      status = 429 }, { ["x-rate-limit-remaining"] = "0", ["x-rate-limit-reset"] = tostring(reset) }) })
    local res, err, failure = c:fetch("acme", {})
    assert.is_nil(res)
    assert.matches("429", err)
    assert.same({ rate_limited = true, reset = reset }, failure)
  end)

  it("answers a 429 without headers as rate limited for a minute", function()
    local c = client({ response(429, { errors = { { code = 88, message = "Rate limit exceeded" } } }) })
    local _, _, failure = c:fetch("acme", {})
    assert.is_true(failure.rate_limited)
    assert.is_true(failure.reset > host.time() + 50 and failure.reset < host.time() + 70)
  end)

  it("tells a 401 (not retryable) from a 503 (retryable) and refuses a post without an id", function()
    local c = client({ response(401, { title = "Unauthorized", status = 401 }), response(503, "oops"),
      response(200, { data = { { text = "no id" } }, meta = { result_count = 1 } }) })
    assert.same({ retryable = false }, select(3, c:fetch("acme", {})))
    assert.same({ retryable = true }, select(3, c:fetch("acme", {})))
    local res, err = c:fetch("acme", {})
    assert.is_nil(res)
    assert.equal("x: post without a valid id", err)
  end)
end)
