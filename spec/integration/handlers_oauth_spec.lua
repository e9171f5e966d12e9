-- oauth (scripts/oauth.lua), its handlers called in-process with requests shaped
-- as mc.web's, on a private database and Redis, against the project's sandbox
-- Salesforce (auto-approving): the sign-in link (authenticate), Salesforce's
-- answer (callback) and Heroku Connect's return (connect_complete), each refusal
-- and failure, and the moves each success makes.
local http = require "mc.http"
local crypto = require "mc.crypto"
local redis = require "mc.redis"
local conns = require "mc.conns"
local db = require "lib.db"
local links = require "lib.tokens"
local oauth = require "oauth"
local fixture = require "support.onboarding_fixture"
local web_request = require "support.web_request"

local ORG = "00D5e000000AbCdEAK" -- the sandbox's Acme, whose admin is admin@acme.example
local NOBODY = "00D5e000000OtHrEAK"
local KNOBS = { salesforce = { auto_approve = true, client_id = "spec-client", client_secret = "spec-secret" } }

describe("oauth handlers", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_handlers_oauth", redis = 9, sandbox = 10, knobs = KNOBS })

  local function decoded(s)
    return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end

  -- the query of a URL, decoded
  local function query_of(url)
    local q = {}
    for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do q[decoded(k)] = decoded(v) end
    return q
  end

  local function authenticate(query)
    return oauth.authenticate(web_request.new{ path = "/authenticate", query = query })
  end

  local function callback(query)
    return oauth.callback(web_request.new{ path = "/auth/salesforce/callback", query = query })
  end

  local function link(id) return { org = id or ORG, t = links.authenticate({ org_id = id or ORG }) } end

  -- the admin follows the mailed link and approves at the sandbox -> the query
  -- Salesforce sends our callback ({code, state})
  local function approved()
    local status, _, headers = authenticate(link())
    assert.equal(302, status)
    local res = assert(http.get(headers.Location))
    assert.equal(302, res.status, res.body)
    assert.matches("^https://mc%.example/auth/salesforce/callback%?", res.headers.location)
    return query_of(res.headers.location)
  end

  local function queued()
    local out = {}
    for i, j in ipairs(fx:queued()) do out[i] = { j.class, j.args[1] } end
    return out
  end

  local function closed_redis()
    local r = assert(redis.connect(fx.rdb.url))
    r:close()
    return r
  end

  local function title(html) return html:match("<h1>(.-)</h1>") end

  describe("authenticate", function()
    it("302 to Salesforce's authorize page with a single-use state stored in Redis for the org", function()
      fx:org(ORG, { state = "authorize_url_ready" })
      local status, body, headers = authenticate(link())
      assert.same({ 302, "", "no-store" }, { status, body, headers["Cache-Control"] })
      local url = headers.Location
      assert.equal(fx.sb.url .. "/salesforce/services/oauth2/authorize", url:match("^[^?]+"))
      local q = query_of(url)
      assert.same({ "code", "spec-client", "https://mc.example/auth/salesforce/callback", "admin@acme.example" },
        { q.response_type, q.client_id, q.redirect_uri, q.login_hint })
      assert.matches("^[%w_-]+$", q.state)
      assert.equal(ORG, fx.r:call("GET", "mc:oauth:state:" .. q.state))
      local ttl = fx.r:call("TTL", "mc:oauth:state:" .. q.state)
      assert(ttl > 890 and ttl <= 900, "ttl " .. tostring(ttl))
      -- each visit its own state
      local _, _, again = authenticate(link())
      assert.not_equal(q.state, query_of(again.Location).state)
    end)

    it("also from awaiting_app_oauth (the link works as soon as its mail is sent)", function()
      fx:org(ORG, { state = "awaiting_app_oauth" })
      assert.equal(302, (authenticate(link())))
    end)

    it("400 for a link naming no org; 403 for a missing, tampered, expired or another org's token", function()
      fx:org(ORG, { state = "authorize_url_ready" })
      local status, html = authenticate({ org = "nope", t = link().t })
      assert.same({ 400, "Unknown link" }, { status, title(html) })
      status, html = authenticate({ org = ORG })
      assert.same({ 403, "Unknown link" }, { status, title(html) })
      local t = link().t
      local tampered = t:sub(1, -3) .. (t:sub(-2, -2) == "A" and "B" or "A") .. t:sub(-1)
      assert.same({ 403, "Unknown link" }, { (function() local s, h = authenticate({ org = ORG, t = tampered })
        return s, title(h) end)() })
      status, html = authenticate({ org = ORG, t = link(NOBODY).t })
      assert.same({ 403, "Unknown link" }, { status, title(html) })
      local expired = crypto.seal(ORG .. ":" .. (os.time() - 1), "authenticate")
      status, html = authenticate({ org = ORG, t = expired })
      assert.same({ 403, "This link has expired" }, { status, title(html) })
      local other_purpose = crypto.seal(ORG .. ":" .. (os.time() + 60), "connection_auth_complete")
      assert.equal(403, (authenticate({ org = ORG, t = other_purpose })))
      assert.same({}, fx.r:call("KEYS", "mc:oauth:state:*"))
    end)

    it("404 for an org with no onboarding; 409 for one whose sign-in is not expected now", function()
      local status, html = authenticate(link())
      assert.same({ 404, "Unknown org" }, { status, title(html) })
      fx:org(ORG, { state = "app_linked" })
      status, html = authenticate(link())
      assert.same({ 409, "Nothing to do here" }, { status, title(html) })
      assert.matches("(it is app_linked)", html, 1, true)
      assert.same({}, fx.r:call("KEYS", "mc:oauth:state:*"))
    end)

    it("503 when the database or Redis fails", function()
      fx:org(ORG, { state = "authorize_url_ready" })
      conns.use("redis", closed_redis())
      local status, html = authenticate(link())
      assert.same({ 503, "Please try again" }, { status, title(html) })
      conns.use("redis", fx.r)
      db.use(fx:closed())
      assert.equal(503, (authenticate(link())))
    end)
  end)

  describe("callback", function()
    it("400 for an unknown, malformed or already used state", function()
      fx:org(ORG, { state = "authorize_url_ready" })
      local status, html = callback({ state = "no-such-state", code = "x" })
      assert.same({ 400, "This sign-in link has expired" }, { status, title(html) })
      assert.equal(400, (callback({ state = "bad state!", code = "x" })))
      assert.equal(400, (callback({ code = "x" })))
      local q = approved()
      assert.equal(200, (callback(q)))
      assert.equal(400, (callback(q))) -- single use
      assert.is_nil(fx.r:call("KEYS", "mc:oauth:state:*")[1])
    end)

    it("200 from authorize_url_ready and from awaiting_app_oauth: tokens sealed, app_authorized, "
      .. "the step queued", function()
      for _, from in ipairs({ "authorize_url_ready", "awaiting_app_oauth" }) do
        assert(fx.conn:exec("DELETE FROM organizations"))
        assert(fx.r:call("DEL", "queue:default"))
        fx:org(ORG, { state = from, attempts = 2, last_error = "earlier" })
        local status, html = callback(approved())
        assert.same({ 200, "Thank you" }, { status, title(html) })
        local row = fx:row(ORG)
        assert.same({ "app_authorized", 0, mc.null, fx.sb.url .. "/salesforce", "admin@acme.example",
          "0055e000001XyZwAAK" }, { row.state, row.attempts, row.last_error, row.instance_url, row.sf_username,
          row.sf_user_id })
        local access = crypto.open(row.access_token, "organizations.access_token:" .. ORG)
        assert.matches("^00D5e000000AbCd!AQ", access) -- sealed, bound to the org
        assert.is_nil(crypto.open(row.access_token, "organizations.access_token:" .. NOBODY))
        assert.equal("string", type(crypto.open(row.refresh_token, "organizations.refresh_token:" .. ORG)))
        assert.same({ { "transition", from, "app_authorized", { sf_username = "admin@acme.example",
          instance_url = fx.sb.url .. "/salesforce" } } }, fx:events(ORG))
        assert.same({ { "onboarding.advance", ORG } }, queued())
      end
    end)

    it("403 when the admin refused at Salesforce: a failure noted, the org still waiting", function()
      fx:org(ORG, { state = "awaiting_app_oauth" })
      local q = approved()
      local status, html = callback({ state = q.state, error = "access_denied",
        error_description = "end-user denied authorization" })
      assert.same({ 403, "Access was not granted" }, { status, title(html) })
      assert.matches("end-user denied authorization", html, 1, true)
      assert.equal("awaiting_app_oauth", fx:row(ORG).state)
      assert.same({ { "failure", "awaiting_app_oauth", "awaiting_app_oauth",
        { error = "salesforce: access_denied", description = "end-user denied authorization" } } }, fx:events(ORG))
      assert.same({}, queued())
    end)

    it("400 without a code; 502 when the code does not exchange or the identity fails; the org untouched", function()
      fx:org(ORG, { state = "awaiting_app_oauth" })
      local status, html = callback({ state = approved().state })
      assert.same({ 400, "Bad answer" }, { status, title(html) })
      status, html = callback({ state = approved().state, code = "not-a-code" })
      assert.same({ 502, "Salesforce did not confirm the sign-in" }, { status, title(html) })
      local q = approved()
      fx.sb:knobs({ salesforce = { token_ttl = 0 } }) -- the token is dead on arrival: identity answers 401
      assert.equal(502, (callback(q)))
      assert.same({ "awaiting_app_oauth", mc.null }, { fx:row(ORG).state, fx:row(ORG).access_token })
      assert.same({}, fx:events(ORG))
      assert.same({}, queued())
    end)

    it("403 when the admin signed in to another org: the org fails at awaiting_app_oauth", function()
      fx:org(ORG, { state = "awaiting_app_oauth", admin_email = "admin@globex.example" })
      local status, html = callback(approved())
      assert.same({ 403, "Wrong Salesforce org" }, { status, title(html) })
      local row = fx:row(ORG)
      local reason = "signed in to org 00D5e000000GlBxEAK, but the install came from " .. ORG
      assert.same({ "failed", "awaiting_app_oauth", reason, mc.null },
        { row.state, row.failed_step, row.last_error, row.access_token })
      assert.same({ { "failure", "awaiting_app_oauth", "failed", { error = reason, step = "awaiting_app_oauth" } } },
        fx:events(ORG))
      -- no step: the two failure mails only (the admin's, the operator's)
      assert.same({ { "alerts.mail", ORG }, { "alerts.mail", ORG } }, queued())
    end)

    it("409 when the org moved on between the sign-in link and Salesforce's answer", function()
      fx:org(ORG, { state = "awaiting_app_oauth" })
      local q = approved()
      assert(fx.conn:exec("UPDATE organizations SET state = 'subscriber_updated' WHERE org_id = '" .. ORG .. "'"))
      local status, html = callback(q)
      assert.same({ 409, "Nothing to do here" }, { status, title(html) })
      assert.same({ "subscriber_updated", mc.null }, { fx:row(ORG).state, fx:row(ORG).access_token })
      assert.same({}, queued())
    end)

    it("404 when the org is gone; 503 when Redis or the database fails; the org untouched", function()
      fx:org(ORG, { state = "awaiting_app_oauth" })
      local q = approved()
      assert(fx.conn:exec("DELETE FROM organizations"))
      assert.equal(404, (callback(q)))
      fx:org(ORG, { state = "awaiting_app_oauth" })
      q = approved()
      conns.use("redis", closed_redis())
      local status, html = callback(q)
      assert.same({ 503, "Please try again" }, { status, title(html) })
      conns.use("redis", fx.r)
      db.use(fx:closed())
      assert.equal(503, (callback(q))) -- the state outlived Redis's failure: this one reached the database
      db.use(fx.conn)
      assert.equal("awaiting_app_oauth", fx:row(ORG).state)
      assert.same({}, queued())
    end)

    it("answers a gone org (404) and a database failure (503) with the whole page and its headers", function()
        fx:org(ORG, { state = "awaiting_app_oauth" })
        local q = approved()
        assert(fx.conn:exec("DELETE FROM organizations"))
        local status, html, headers = callback(q)
        assert.same({ 404, "Unknown org", "no-store" }, { status, title(html or ""), (headers or {})["Cache-Control"] })
        fx:org(ORG, { state = "awaiting_app_oauth" })
        q = approved()
        db.use(fx:closed())
        status, html = callback(q)
        assert.same({ 503, "Please try again" }, { status, title(html or "") })
      end)
  end)

  describe("connect_complete", function()
    local function complete(token)
      return oauth.connect_complete(web_request.new{ path = "/connection_auth_complete/" .. token,
        params = { token = token } })
    end

    it("404 for a token that does not open, or names another connection or no org", function()
      fx:org(ORG, { state = "awaiting_connect_oauth", connection_id = "conn-1" })
      local status, html = complete("garbage")
      assert.same({ 404, "Unknown link" }, { status, title(html) })
      assert.equal(404, (complete(links.connect({ org_id = ORG }, "conn-2"))))
      assert.equal(404, (complete(links.connect({ org_id = NOBODY }, "conn-1"))))
      assert.equal(404, (complete(crypto.seal(ORG .. ":conn-1", "authenticate")))) -- another purpose
      assert.equal("awaiting_connect_oauth", fx:row(ORG).state)
      assert.same({}, queued())
    end)

    it("200: from awaiting_connect_oauth or subscriber_updated to connect_authorized, the step queued", function()
      for _, from in ipairs({ "awaiting_connect_oauth", "subscriber_updated" }) do
        assert(fx.conn:exec("DELETE FROM organizations"))
        assert(fx.r:call("DEL", "queue:default"))
        fx:org(ORG, { state = from, connection_id = "conn-1", attempts = 3 })
        local status, html = complete(links.connect({ org_id = ORG }, "conn-1"))
        assert.same({ 200, "Heroku Connect is authorized" }, { status, title(html) })
        assert.same({ "connect_authorized", 0 }, { fx:row(ORG).state, fx:row(ORG).attempts })
        assert.same({ { "transition", from, "connect_authorized", {} } }, fx:events(ORG))
        assert.same({ { "onboarding.advance", ORG } }, queued())
      end
    end)

    it("200 but nothing moved for an org already past it (a second click)", function()
      fx:org(ORG, { state = "mappings_imported", connection_id = "conn-1" })
      assert.equal(200, (complete(links.connect({ org_id = ORG }, "conn-1"))))
      assert.equal("mappings_imported", fx:row(ORG).state)
      assert.same({}, fx:events(ORG))
      assert.same({}, queued())
    end)

    it("409 and nothing moved for an org that is not expecting it (failed, offboarded, still earlier)", function()
      for _, state in ipairs({ "failed", "offboarded", "app_linked" }) do
        assert(fx.conn:exec("DELETE FROM organizations"))
        fx:org(ORG, { state = state, connection_id = "conn-1" })
        local status, html = complete(links.connect({ org_id = ORG }, "conn-1"))
        assert.same({ 409, "Nothing to do here" }, { status, title(html) })
        assert.equal(state, fx:row(ORG).state)
        assert.same({}, queued())
      end
    end)

    it("503 when the database fails", function()
      db.use(fx:closed())
      local status, html = complete(links.connect({ org_id = ORG }, "conn-1"))
      assert.same({ 503, "Please try again" }, { status, title(html) })
    end)
  end)
end)
