-- clients.salesforce against the project's sandbox Salesforce (sandbox/salesforce.lua:
-- the login host's OAuth web-server flow, the identity URL, the package's Apex REST
-- resource), and a replay server for answers the sandbox never gives. Calls answer
-- result | nil, err, retryable (refresh and apex add reauth: the refresh token is dead).
local salesforce = require "clients.salesforce"
local crypto = require "mc.crypto"
local http = require "mc.http"
local env_vars = require "support.env_vars"
local sandbox_client = require "support.sandbox_client"
local replay = require "support.replay_server"
local stack = require "support.stack"

local ORG_ID = "00D5e000000AbCdEAK" -- the sandbox knobs' default org
local KNOBS = { salesforce = { auto_approve = true, client_id = "spec-client", client_secret = "spec-secret" } }

describe("clients.salesforce", function()
  local sb, login
  local env = env_vars.layered(function()
    return { SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret",
      SALESFORCE_LOGIN_URL = login, SALESFORCE_SANDBOX_LOGIN_URL = sb.url .. "/salesforce-test",
      APP_URL = "https://mc.example/", HEROKU_APP_NAME = false, FORCE_NAMESPACE = false,
      ENCRYPTION_KEYS = stack.KEYS }
  end)
  local function configure(vars) env:set(vars) end

  setup(function()
    sb = sandbox_client.start(24)
    login = sb.url .. "/salesforce"
  end)
  teardown(function() sb:stop() end)

  before_each(function()
    sb:reset(KNOBS)
    configure()
  end)
  after_each(function() env:restore() end)

  local function org(fields)
    local o = { org_id = ORG_ID, environment = "production", admin_email = "admin@acme.example" }
    for k, v in pairs(fields or {}) do o[k] = v end
    return o
  end

  -- the admin approving at the sandbox's authorize page -> the code it redirects with
  local function code_for(o)
    local res = assert(http.get(salesforce.authorize_url(o, "st-1")))
    assert.equal(302, res.status, res.body)
    local code = assert(res.headers.location:match("[?&]code=([^&]+)"), res.headers.location)
    return (code:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end

  -- an org row as onboarding stores it after sign-in: sealed tokens, the instance
  local function signed_in(knobs)
    if knobs then sb:knobs({ salesforce = knobs }) end
    local o = org()
    local t = assert(salesforce.exchange(o, code_for(o)))
    o.access_token = salesforce.seal(o, "access_token", t.access_token)
    o.refresh_token = salesforce.seal(o, "refresh_token", t.refresh_token)
    o.instance_url = t.instance_url
    return o, t
  end

  local function recorder()
    local saved = {}
    return saved, function(fields) saved[#saved + 1] = fields; return fields end
  end

  describe("configuration", function()
    it("app_url (config): APP_URL without its trailing slash, else the Heroku app's URL, else raises", function()
      local config = require "config"
      assert.equal("https://mc.example", config.app_url())
      assert.equal("https://mc.example/auth/salesforce/callback", salesforce.redirect_uri())
      configure({ APP_URL = false, HEROKU_APP_NAME = "mc-prod" })
      assert.equal("https://mc-prod.herokuapp.com", config.app_url())
      configure({ APP_URL = false })
      assert.has_error(function() config.app_url() end, "APP_URL is required but not set")
    end)

    it("login_url: the production, sandbox or My Domain host", function()
      assert.equal(login, salesforce.login_url(org()))
      configure({ SALESFORCE_LOGIN_URL = login .. "///" })
      assert.equal(login, salesforce.login_url(org()))
      assert.equal(sb.url .. "/salesforce-test", salesforce.login_url(org({ environment = "sandbox" })))
      assert.equal("https://acme.my.salesforce.com",
        salesforce.login_url(org({ environment = "custom", login_domain = "acme.my.salesforce.com" })))
      configure({ SALESFORCE_LOGIN_URL = false })
      assert.equal("https://login.salesforce.com", salesforce.login_url(org()))
    end)

    it("authorize_url: the authorize page with the code flow's parameters, the hint and the state", function()
      assert.equal(login .. "/services/oauth2/authorize?" .. http.encode_query({ response_type = "code",
        client_id = "spec-client", redirect_uri = "https://mc.example/auth/salesforce/callback",
        scope = "api refresh_token", state = "s t", login_hint = "admin@acme.example", prompt = "login consent" }),
        salesforce.authorize_url(org(), "s t"))
    end)
  end)

  describe("exchange", function()
    it("trades the code for tokens, once", function()
      local o = org()
      local code = code_for(o)
      local t = assert(salesforce.exchange(o, code))
      assert.is_string(t.access_token)
      assert.is_string(t.refresh_token)
      assert.equal(login, t.instance_url)
      assert.equal(login .. "/id/" .. ORG_ID .. "/", t.id:sub(1, #login + 23))
      assert.same({ nil, "salesforce: HTTP 400 invalid_grant: expired authorization code", false },
        { salesforce.exchange(o, code) })
    end)

    it("answers a wrong client secret as a permanent OAuth error", function()
      local o = org()
      local code = code_for(o)
      configure({ SALESFORCE_CLIENT_SECRET = "wrong" })
      assert.same({ nil, "salesforce: HTTP 400 invalid_client: invalid client credentials", false },
        { salesforce.exchange(o, code) })
    end)

    it("answers an injected 503 as retryable", function()
      sb:knobs({ salesforce = { fail_next = 1, fail_status = 503 } })
      assert.same({ nil, "salesforce: HTTP 503 SERVER_UNAVAILABLE: The sandbox injected this failure.", true },
        { salesforce.exchange(org(), "any") })
    end)
  end)

  describe("identity", function()
    it("reads the identity document at the login host with the access token", function()
      local _, t = signed_in()
      local doc = assert(salesforce.identity(org(), t))
      assert.equal(ORG_ID, doc.organization_id)
    end)

    it("refuses an identity URL that is not Salesforce's, before any request", function()
      for _, url in ipairs({ "https://evil.example/id/x", "http://login.salesforce.com/id/x",
        "https://login.salesforce.com.evil.example/id/x", "https://salesforce.com@evil.example/id/x",
        login .. "evil/id/x", 42 }) do
        assert.same({ nil, "salesforce: the token response's identity URL is not Salesforce's: "
          .. tostring(url), false },
          { salesforce.identity(org(), { id = url, access_token = "t" }) })
      end
    end)

    it("answers a dead access token as the API's 401, not retryable", function()
      local _, t = signed_in()
      t.access_token = "00Dxx!expired"
      assert.same({ nil, "salesforce: HTTP 401 INVALID_SESSION_ID: Session expired or invalid", false },
        { salesforce.identity(org(), t) })
    end)
  end)

  describe("refresh", function()
    it("gets a new access token, seals it for this org, saves it and updates the row", function()
      local o = signed_in()
      local saved, save = recorder()
      local access = assert(salesforce.refresh(o, save))
      assert.equal(1, #saved)
      assert.same({ "access_token", "instance_url" }, (function()
        local keys = {}
        for k in pairs(saved[1]) do keys[#keys + 1] = k end
        table.sort(keys)
        return keys
      end)())
      assert.equal(access, crypto.open(saved[1].access_token, "organizations.access_token:" .. ORG_ID))
      assert.equal(saved[1].access_token, o.access_token)
      -- sealed for this org only
      assert.is_nil(crypto.open(saved[1].access_token, "organizations.access_token:00D5e000000AbCeEAK"))
    end)

    it("stores the rotated refresh token when Salesforce rotates it", function()
      local o = signed_in({ refresh_rotation = true })
      local old = o.refresh_token
      local saved, save = recorder()
      assert(salesforce.refresh(o, save))
      assert.is_string(saved[1].refresh_token)
      assert.not_equal(old, o.refresh_token)
      assert.truthy(salesforce.refresh(o, save)) -- the new one works
    end)

    it("without a stored token, or one sealed for another org, asks for a sign-in (reauth)", function()
      local _, save = recorder()
      assert.same({ nil, "salesforce: no refresh token stored", false, true }, { salesforce.refresh(org(), save) })
      local other = org({ org_id = "00D5e000000AbCeEAK" })
      local o = org({ refresh_token = salesforce.seal(other, "refresh_token", "5Aep-x") })
      local ok, err, retry, reauth = salesforce.refresh(o, save)
      assert.is_nil(ok)
      assert.matches("^salesforce: stored refresh token does not open: ", err)
      assert.same({ false, true }, { retry, reauth })
    end)

    it("a revoked refresh token (invalid_grant) asks for a sign-in; other failures do not", function()
      local o = signed_in()
      local saved, save = recorder()
      sb:knobs({ salesforce = { grant_error = "invalid_grant" } })
      assert.same({ nil, "salesforce: HTTP 400 invalid_grant: authentication failure", false, true },
        { salesforce.refresh(o, save) })
      sb:knobs({ salesforce = { grant_error = "inactive_org" } })
      assert.same({ nil, "salesforce: HTTP 400 inactive_org: organization is inactive", false, false },
        { salesforce.refresh(o, save) })
      sb:knobs({ salesforce = { grant_error = mc.null, fail_next = 1, fail_status = 500 } })
      assert.same({ nil, "salesforce: HTTP 500 UNKNOWN_EXCEPTION: The sandbox injected this failure.", true, false },
        { salesforce.refresh(o, save) })
      assert.same({}, saved)
    end)
  end)

  describe("apex", function()
    local BODY = { connectionId = "c-1", authorizeUrl = "https://connect.example/authorize/x" }

    local function connection_record()
      return sb:get("/__sandbox/salesforce/orgs/" .. ORG_ID).Connection__c
    end

    it("POSTs the body to the package's Apex REST resource with the org's session", function()
      local o = signed_in()
      local res = assert(salesforce.apex(o, "AuthConnection", BODY, function() error("no refresh expected") end))
      assert.equal(200, res.status)
      local rec = connection_record()
      assert.equal("c-1", rec.Connection_Id__c)
      assert.equal(BODY.authorizeUrl, rec.Auth_URL__c)
    end)

    it("puts FORCE_NAMESPACE in the path (a managed package answers there only)", function()
      local o = signed_in({ namespace = "hcpoc" })
      local _, err = salesforce.apex(o, "AuthConnection", BODY, function() end)
      assert.equal("salesforce: HTTP 404 NOT_FOUND: Could not find a match for URL", err)
      configure({ FORCE_NAMESPACE = "hcpoc" })
      assert.equal(200, assert(salesforce.apex(o, "AuthConnection", BODY, function() end)).status)
    end)

    it("refreshes an expired session once and retries, saving the new token", function()
      local o = signed_in()
      o.access_token = salesforce.seal(o, "access_token", "00Dxx!expired")
      local saved, save = recorder()
      assert.equal(200, assert(salesforce.apex(o, "AuthConnection", BODY, save)).status)
      assert.equal(1, #saved)
      assert.equal("c-1", connection_record().Connection_Id__c)
    end)

    it("with an expired session and a dead refresh token, says so with reauth", function()
      local o = signed_in()
      o.access_token = salesforce.seal(o, "access_token", "00Dxx!expired")
      o.refresh_token = salesforce.seal(o, "refresh_token", "5Aep-revoked")
      assert.same({ nil, "refreshing the session: salesforce: HTTP 400 invalid_grant: expired access/refresh token",
        false, true }, { salesforce.apex(o, "AuthConnection", BODY, function() end) })
    end)

    it("passes the API's refusals on: 403 no access (permanent), 403 limit and 500 (retryable)", function()
      local o = signed_in({ apex_access = false })
      assert.same({ nil, "salesforce: HTTP 403 FORBIDDEN: "
        .. "You do not have access to the Apex class named: RESTAuthConnection",
        false }, { salesforce.apex(o, "AuthConnection", BODY, function() end) })
      sb:knobs({ salesforce = { apex_access = true, fail_next = 1, fail_status = 403 } })
      assert.same({ nil, "salesforce: HTTP 403 REQUEST_LIMIT_EXCEEDED: The sandbox injected this failure.", true },
        { salesforce.apex(o, "AuthConnection", BODY, function() end) })
      sb:knobs({ salesforce = { apex_error = true } })
      local _, err, retry = salesforce.apex(o, "AuthConnection", BODY, function() end)
      assert.matches("^salesforce: HTTP 500 APEX_ERROR: System.NullPointerException", err)
      assert.is_true(retry)
    end)

    it("without a stored access token fails before any request", function()
      assert.same({ nil, "salesforce: no access token stored", false },
        { salesforce.apex(org({ instance_url = login }), "AuthConnection", BODY, function() end) })
    end)
  end)

  describe("against a replayed API", function()
    local srv = replay.fixture(_ENV, 25, function(s) configure({ SALESFORCE_LOGIN_URL = s.url }) end)

    it("exchange: sends the form with the client's credentials; a token without instance_url is refused", function()
      srv:answer(200, { access_token = "00D!a", id = srv.url .. "/id/x/y" })
      assert.same({ nil, "salesforce: token response without access_token/instance_url", false },
        { salesforce.exchange(org(), "c0de") })
      local req = srv:requests()[1]
      assert.equal("/services/oauth2/token", req.path)
      assert.equal("application/x-www-form-urlencoded", req.headers["content-type"])
      assert.equal(http.encode_query({ grant_type = "authorization_code", code = "c0de", client_id = "spec-client",
        client_secret = "spec-secret", redirect_uri = "https://mc.example/auth/salesforce/callback" }), req.body)
    end)

    it("identity: a document without organization_id is refused", function()
      srv:answer(200, { user_id = "005x", username = "a@b.c" })
      assert.same({ nil, "salesforce: identity without organization_id", false },
        { salesforce.identity(org(), { id = srv.url .. "/id/00D/005", access_token = "t" }) })
    end)

    it("apex: a second 401 after a good refresh is the answer, with no third try", function()
      local o = org({ instance_url = srv.url .. "/", access_token = salesforce.seal(org(), "access_token", "a1"),
        refresh_token = salesforce.seal(org(), "refresh_token", "r1") })
      local unauthorized = { { message = "Session expired or invalid", errorCode = "INVALID_SESSION_ID" } }
      srv:answer(401, unauthorized):answer(200, { access_token = "a2", instance_url = srv.url })
        :answer(401, unauthorized)
      local saved, save = recorder()
      assert.same({ nil, "salesforce: HTTP 401 INVALID_SESSION_ID: Session expired or invalid", false },
        { salesforce.apex(o, "AuthConnection", {}, save) })
      local reqs = srv:requests()
      assert.equal(3, #reqs)
      assert.equal("Bearer a1", reqs[1].headers.authorization)
      assert.equal("Bearer a2", reqs[3].headers.authorization)
      assert.equal("/services/apexrest/AuthConnection", reqs[3].path)
      assert.equal(1, #saved)
    end)

    it("a 429 with Retry-After is retryable after the wait it names", function()
      srv:answer(429, { error = "rate_limit_exceeded", error_description = "rate limit exceeded" },
        { ["Retry-After"] = "10" })
      assert.same({ nil, "salesforce: HTTP 429 rate_limit_exceeded: rate limit exceeded", 10 },
        { salesforce.exchange(org(), "c") })
    end)
  end)
end)
