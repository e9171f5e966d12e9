-- The sandbox's SendGrid, X and Mastodon stand-ins, driven through mc.http as the
-- onboarding and the social import will drive the real ones (docs/external-apis.md §4, §5).
local sandbox = require "support.sandbox"
local http = require "mc.http"

describe("sandbox: mail and social", function()
  local sb, root, control

  local function knobs(service, doc)
    assert.equal(200, assert(http.post(control .. "/config", { json = { [service] = doc } })).status)
  end

  setup(function()
    local url
    sb, url = sandbox.start(15)
    root = url
    control = root .. "/__sandbox"
  end)
  teardown(function() sb:stop() end)
  before_each(function()
    assert.equal(204, assert(http.post(control .. "/reset")).status)
  end)

  describe("SendGrid", function()
    local function send(body, headers)
      local h = { Authorization = "Bearer SG.spec-key", Accept = "application/json" }
      for k, v in pairs(headers or {}) do h[k] = v or nil end
      return assert(http.post(root .. "/sendgrid/v3/mail/send", { json = body, headers = h }))
    end
    local function mail(over)
      local m = {
        personalizations = { { to = { { email = "admin@acme.test", name = "Ada" } } } },
        from = { email = "onboarding@multiconnect.test" }, subject = "Connect your org",
        content = { { type = "text/plain", value = "Start here: https://app.test/start?org=1." },
                    { type = "text/html",
                      value = '<p><a href="https://app.test/auth?a=1&amp;b=2">Authorize</a></p>' } },
      }
      for k, v in pairs(over or {}) do m[k] = v end
      return m
    end
    local function mailbox(query)
      local res = assert(http.get(root .. "/sendgrid/__mailbox", { query = query }))
      assert.equal(200, res.status)
      return res:json(), res.body
    end

    it("accepts a mail with 202, no body and X-Message-Id, and keeps it in the mailbox with its links", function()
      local res = send(mail())
      assert.equal(202, res.status)
      assert.equal("", res.body)
      assert.matches("^[%w_%-]+$", res.headers["x-message-id"])
      local box = mailbox()
      assert.equal(1, #box)
      assert.same({ "admin@acme.test" }, box[1].to)
      assert.equal("onboarding@multiconnect.test", box[1].from.email)
      assert.equal("Connect your org", box[1].subject)
      assert.equal(res.headers["x-message-id"], box[1].message_id)
      assert.same({ "https://app.test/start?org=1", "https://app.test/auth?a=1&b=2" }, box[1].links)
      assert.matches("Start here", box[1].text)
      assert.matches("Authorize", box[1].html)
    end)

    it("filters the mailbox by recipient, keeps one message per personalization, and empties on DELETE", function()
      send(mail({ personalizations = {
        { to = { { email = "one@acme.test" } }, cc = { { email = "boss@acme.test" } }, subject = "Hi -name-",
          substitutions = { ["-name-"] = "One" }, headers = { ["X-Org"] = "00D1" } },
        { to = { { email = "two@acme.test" } } } } }))
      send(mail({ personalizations = { { to = { { email = "One@Acme.test" } } } }, subject = "Second" }))
      local box, raw = mailbox()
      assert.equal(3, #box)
      assert.matches('"bcc":%[%]', raw)
      assert.equal("Hi One", box[1].subject)
      assert.equal("00D1", box[1].headers["X-Org"])
      assert.equal("Connect your org", box[2].subject)
      local mine = mailbox({ to = "one@acme.test" })
      assert.equal(2, #mine)
      assert.equal("Second", mine[2].subject) -- newest last
      assert.equal(1, #mailbox({ to = "boss@acme.test" }))
      assert.equal(204, assert(http.delete(root .. "/sendgrid/__mailbox")).status)
      assert.same({}, mailbox())
      assert.matches("^%[%]$", select(2, mailbox()))
    end)

    it("validates the body: 400 with field-level errors", function()
      local res = send({ personalizations = { { to = { { email = "not-an-address" } } } },
        content = { { type = "text/html", value = "x" }, { type = "text/plain", value = "" } } })
      assert.equal(400, res.status)
      local fields = {}
      for _, e in ipairs(res:json().errors) do
        fields[e.field] = e.message
        assert.matches("^http", e.help)
      end
      assert.equal("Does not contain a valid address.", fields["personalizations.0.to.0.email"])
      assert.truthy(fields["from"])
      assert.truthy(fields["subject"])
      assert.truthy(fields["content.1.type"])
      assert.truthy(fields["content.1.value"])
      assert.truthy(send({}):json().errors[1].field == "personalizations")
      local bad = send(mail({ personalizations = {
        { to = { { email = "a@b.test" } }, bcc = { { email = "A@b.test" } } } } }))
      assert.equal(400, bad.status)
      assert.equal("personalizations.0.bcc", bad:json().errors[1].field)
      local garbage = assert(http.post(root .. "/sendgrid/v3/mail/send",
        { body = "{nope", headers = { Authorization = "Bearer SG.k", ["Content-Type"] = "application/json" } }))
      assert.equal(400, garbage.status)
      assert.equal("Bad Request", garbage:json().errors[1].message)
      assert.same({}, mailbox())
    end)

    it("validates without sending in sandbox mode: 200", function()
      local res = send(mail({ mail_settings = { sandbox_mode = { enable = true } } }))
      assert.equal(200, res.status)
      assert.equal("", res.body)
      assert.equal(400, send(mail({ subject = false, mail_settings = { sandbox_mode = { enable = true } } })).status)
      assert.same({}, mailbox())
    end)

    it("refuses a missing or wrong key with 401, an unverified sender with 403", function()
      local res = send(mail(), { Authorization = false })
      assert.equal(401, res.status)
      assert.equal("The provided authorization grant is invalid, expired, or revoked", res:json().errors[1].message)
      assert.matches('"field":null', res.body)
      knobs("sendgrid", { api_key = "SG.right" })
      assert.equal(401, send(mail()).status)
      assert.equal(202, send(mail(), { Authorization = "Bearer SG.right" }).status)
      knobs("sendgrid", { api_key = mc.null, verified_senders = { "@verified.test" } })
      res = send(mail())
      assert.equal(403, res.status)
      assert.equal("from", res:json().errors[1].field)
      assert.equal(202, send(mail({ from = { email = "x@verified.test" } })).status)
      assert.equal(406, send(mail(), { Accept = "text/html" }).status)
    end)

    it("answers 429 with the rate-limit headers when the window is spent, and injected faults", function()
      knobs("sendgrid", { rate_limit = 2, rate_window = 3600 })
      assert.equal("1", send(mail()).headers["x-ratelimit-remaining"])
      send(mail())
      local res = send(mail())
      assert.equal(429, res.status)
      assert.equal("too many requests", res:json().errors[1].message)
      assert.equal("0", res.headers["x-ratelimit-remaining"])
      assert.truthy(tonumber(res.headers["x-ratelimit-reset"]) > os.time())
      knobs("sendgrid", { rate_limit = mc.null, fail_next = 1 })
      res = send(mail())
      assert.equal(503, res.status)
      assert.is_string(res:json().errors[1].message)
      assert.equal(202, send(mail()).status)
    end)
  end)

  describe("X recent search", function()
    local function search(query, headers)
      local h = { Authorization = "Bearer x-spec-token" }
      for k, v in pairs(headers or {}) do h[k] = v or nil end
      return assert(http.get(root .. "/x/2/tweets/search/recent", { query = query, headers = h }))
    end

    it("finds a handle's posts and mentions, with fields and the author expansion", function()
      local res = search({ query = "from:AcmeCorp OR @AcmeCorp", max_results = 20,
        ["tweet.fields"] = "created_at,public_metrics,author_id,entities", expansions = "author_id" })
      assert.equal(200, res.status)
      assert.truthy(res.headers["x-rate-limit-limit"])
      local body = res:json()
      assert.equal(20, #body.data)
      assert.equal(20, body.meta.result_count)
      assert.equal(body.data[1].id, body.meta.newest_id)
      assert.equal(body.data[20].id, body.meta.oldest_id)
      assert.is_string(body.meta.next_token)
      local users = {}
      for _, u in ipairs(body.includes.users) do users[u.id] = u.username end
      local own, fans = 0, 0
      for i, p in ipairs(body.data) do
        if i > 1 then assert.truthy(math.tointeger(p.id) < math.tointeger(body.data[i - 1].id)) end
        assert.same({ p.id }, p.edit_history_tweet_ids)
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", p.created_at)
        assert.is_number(p.public_metrics.like_count)
        local author = assert(users[p.author_id])
        if author == "AcmeCorp" then own = own + 1 else fans = fans + 1; assert.matches("@AcmeCorp", p.text) end
      end
      assert.truthy(own > 0 and fans > 0)
      -- the same seed gives the same posts; another seed others
      local again = search({ query = "from:AcmeCorp OR @AcmeCorp", max_results = 20 }):json()
      assert.equal(body.data[1].text, again.data[1].text)
      assert.is_nil(search({ query = "from:AcmeCorp" }):json().data[1].created_at) -- default fields only
      knobs("x", { seed = "other" })
      assert.are_not.equal(body.data[1].id, search({ query = "from:AcmeCorp OR @AcmeCorp" }):json().data[1].id)
    end)

    it("pages with next_token until it is absent, and since_id returns only newer posts", function()
      knobs("x", { post_interval = 3 * 3600, mention_interval = 100000000 })
      local seen, token, pages = {}, nil, 0
      repeat
        local body = search({ query = "from:acme", max_results = 10, next_token = token }):json()
        for _, p in ipairs(body.data) do assert.is_nil(seen[p.id]); seen[p.id] = true end
        token = body.meta.next_token
        pages = pages + 1
      until not token
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.truthy(n >= 55 and n <= 57, tostring(n)) -- 7 days, one post every 3 hours
      assert.equal(6, pages)
      local newest = search({ query = "from:acme" }):json().meta.newest_id
      assert.same({ result_count = 0 }, search({ query = "from:acme", since_id = newest }):json().meta)
      knobs("x", { clock_offset = 7 * 3600 })
      local newer = search({ query = "from:acme", since_id = newest }):json()
      assert.truthy(newer.meta.result_count >= 2 and newer.meta.result_count <= 3)
      for _, p in ipairs(newer.data) do assert.truthy(math.tointeger(p.id) > math.tointeger(newest)) end
    end)

    it("applies the query operators", function()
      local none = search({ query = "from:acme -from:acme" })
      assert.equal(200, none.status)
      assert.same({ meta = { result_count = 0 } }, none:json())
      local fans = search({ query = "@acme -from:acme", max_results = 100 }):json()
      for _, p in ipairs(fans.data) do assert.matches("@acme", p.text) end
      local links = search({ query = "(from:acme OR @acme) has:links", max_results = 100 }):json()
      for _, p in ipairs(links.data) do assert.matches("https?://", p.text) end
      local hiring = search({ query = 'from:acme "hiring engineers"', max_results = 100 }):json()
      for _, p in ipairs(hiring.data) do assert.matches("hiring engineers", p.text) end
      local since = os.time() - 5 * 3600
      local recent = search({ query = "from:acme", start_time = os.date("!%Y-%m-%dT%H:%M:%SZ", since),
        ["tweet.fields"] = "created_at" }):json()
      assert.truthy(recent.meta.result_count >= 4 and recent.meta.result_count <= 6, recent.meta.result_count)
      for _, p in ipairs(recent.data) do
        assert.truthy(p.created_at >= os.date("!%Y-%m-%dT%H:%M:%S", since))
      end
    end)

    it("refuses bad parameters with 400 Invalid Request", function()
      for _, q in ipairs({ { query = "from:acme", max_results = 5 }, { query = "from:acme", max_results = 101 },
                           { query = "" }, { query = "foo:bar" }, { query = "(from:acme" },
                           { query = "from:acme", ["tweet.fields"] = "nope" },
                           { query = "from:acme", expansions = "x" },
                           { query = "from:acme", next_token = "zz" }, { query = "from:acme", since_id = "abc" } }) do
        local res = search(q)
        assert.equal(400, res.status)
        assert.equal("Invalid Request", res:json().title)
        assert.equal("https://api.twitter.com/2/problems/invalid-request", res:json().type)
        assert.is_string(res:json().errors[1].message)
      end
    end)

    it("needs a bearer token (401), can be forbidden (403), and rate-limits per token (429)", function()
      local res = search({ query = "from:acme" }, { Authorization = false })
      assert.equal(401, res.status)
      assert.equal("Unauthorized", res:json().title)
      assert.equal(401, res:json().status)
      knobs("x", { bearer_token = "right" })
      assert.equal(401, search({ query = "from:acme" }).status)
      knobs("x", { bearer_token = mc.null, forbidden = true })
      assert.equal("client-not-enrolled", search({ query = "from:acme" }):json().reason)
      knobs("x", { forbidden = mc.null, rate_limit = 2 })
      local first = search({ query = "from:acme" })
      assert.equal("2", first.headers["x-rate-limit-limit"])
      assert.equal("1", first.headers["x-rate-limit-remaining"])
      local reset = tonumber(first.headers["x-rate-limit-reset"])
      assert.truthy(reset > os.time() and reset <= os.time() + 901)
      search({ query = "from:acme" })
      res = search({ query = "from:acme" })
      assert.equal(429, res.status)
      assert.same({ title = "Too Many Requests", detail = "Too Many Requests", type = "about:blank", status = 429 },
        res:json())
      assert.equal("0", res.headers["x-rate-limit-remaining"])
      assert.equal(200, search({ query = "from:acme" }, { Authorization = "Bearer another" }).status)
    end)
  end)

  describe("Mastodon tag timeline", function()
    local function timeline(tag, query, headers)
      return assert(http.get(root .. "/mastodon/api/v1/timelines/tag/" .. tag, { query = query, headers = headers }))
    end
    local function links(res)
      local out = {}
      for url, rel in (res.headers["link"] or ""):gmatch('<([^>]+)>; rel="(%a+)"') do out[rel] = url end
      return out
    end

    it("returns statuses newest first with HTML content and Link paging back at the sandbox", function()
      local res = timeline("Heroku")
      assert.equal(200, res.status)
      local page = res:json()
      assert.equal(20, #page)
      for i, s in ipairs(page) do
        if i > 1 then assert.truthy(math.tointeger(s.id) < math.tointeger(page[i - 1].id)) end
        assert.matches("^<p>.*</p>$", s.content)
        assert.matches('class="mention hashtag" rel="tag">#<span>heroku</span></a>', s.content)
        assert.equal("heroku", s.tags[1].name)
        assert.is_string(s.account.acct)
        assert.is_string(s.url)
        assert.equal("public", s.visibility)
      end
      assert.matches('"media_attachments":%[%]', res.body)
      assert.matches('"in_reply_to_id":null', res.body)
      local l = links(res)
      assert.equal(root .. "/mastodon/api/v1/timelines/tag/heroku?limit=20&max_id=" .. page[20].id, l.next)
      assert.equal(root .. "/mastodon/api/v1/timelines/tag/heroku?limit=20&min_id=" .. page[1].id, l.prev)
      -- follow next: the following, older statuses
      local older = assert(http.get(l.next)):json()
      assert.equal(20, #older)
      assert.truthy(math.tointeger(older[1].id) < math.tointeger(page[20].id))
      -- min_id: the ones right after it, still newest first
      local after = timeline("heroku", { min_id = older[6].id, limit = 3 }):json()
      assert.same({ older[3].id, older[4].id, older[5].id }, { after[1].id, after[2].id, after[3].id })
      -- since_id: the newest ones above it
      local since = timeline("heroku", { since_id = page[3].id, limit = 40 }):json()
      assert.same({ page[1].id, page[2].id }, { since[1].id, since[2].id })
      assert.equal(2, #since)
      assert.equal(40, #timeline("heroku", { limit = 80 }):json())
    end)

    it("answers [] without a Link past the end, 404 for an unknown tag, 401 when a token is needed", function()
      local past = timeline("heroku", { since_id = "999999999999999999999" })
      assert.equal(200, past.status)
      assert.equal("[]", past.body)
      assert.is_nil(past.headers["link"])
      knobs("mastodon", { tags = { "heroku" } })
      local res = timeline("nosuchtag")
      assert.equal(404, res.status)
      assert.same({ error = "Record not found" }, res:json())
      knobs("mastodon", { tags = mc.null, require_token = true })
      res = timeline("heroku")
      assert.equal(401, res.status)
      assert.same({ error = "The access token is invalid" }, res:json())
      assert.equal(200, timeline("heroku", nil, { Authorization = "Bearer tok" }).status)
    end)

    it("counts 300 per 5 minutes by default and answers 429 when spent", function()
      local res = timeline("heroku")
      assert.equal("300", res.headers["x-ratelimit-limit"])
      assert.equal("299", res.headers["x-ratelimit-remaining"])
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", res.headers["x-ratelimit-reset"])
      knobs("mastodon", { rate_limit = 1 })
      assert.equal(429, timeline("heroku").status)
      res = timeline("heroku")
      assert.equal(429, res.status)
      assert.same({ error = "Too many requests" }, res:json())
      assert.equal("0", res.headers["x-ratelimit-remaining"])
    end)
  end)

  describe("Mastodon accounts", function()
    local function get(path, query)
      return assert(http.get(root .. "/mastodon/api/v1/accounts/" .. path, { query = query }))
    end

    it("looks an account up by acct, and pages its own statuses, newest first, all its own", function()
      local res = get("lookup", { acct = "@Alice@Fosstodon.org" })
      assert.equal(200, res.status, res.body)
      local acc = res:json()
      assert.same({ "alice", "alice@fosstodon.org" }, { acc.username, acc.acct })
      assert.matches("^%d+$", acc.id)
      assert.equal(acc.id, get("lookup", { acct = "alice@fosstodon.org" }):json().id) -- stable
      local first = get(acc.id .. "/statuses", { limit = 5, exclude_reblogs = "true" })
      assert.equal(200, first.status)
      local page = first:json()
      assert.equal(5, #page)
      for i, st in ipairs(page) do
        assert.equal("alice@fosstodon.org", st.account.acct)
        if i > 1 then assert.truthy(math.tointeger(st.id) < math.tointeger(page[i - 1].id)) end
      end
      local nxt = first.headers["link"]:match('<([^>]+)>; rel="next"')
      assert.equal(root .. "/mastodon/api/v1/accounts/" .. acc.id .. "/statuses?limit=5&max_id=" .. page[5].id, nxt)
      local older = assert(http.get(nxt)):json()
      assert.truthy(math.tointeger(older[1].id) < math.tointeger(page[5].id))
      local since = get(acc.id .. "/statuses", { since_id = page[2].id }):json()
      assert.same({ page[1].id }, { since[1].id })
      assert.equal(1, #since)
    end)

    it("answers 404 for a malformed or unknown acct, and for an id no lookup gave", function()
      assert.equal(404, get("lookup", { acct = "not an acct" }).status)
      knobs("mastodon", { accounts = { "alice@fosstodon.org" } })
      assert.equal(404, get("lookup", { acct = "bruno@fosstodon.org" }).status)
      assert.equal(200, get("lookup", { acct = "alice@fosstodon.org" }).status)
      local res = get("123/statuses")
      assert.equal(404, res.status)
      assert.same({ error = "Record not found" }, res:json())
    end)
  end)
end)
