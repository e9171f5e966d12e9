-- The sandbox's Salesforce stand-in (docs/external-apis.md §3), driven through mc.http as the
-- onboarding drives the real one: authorize, token grants, identity, Apex REST.
local sandbox = require "support.sandbox"
local http = require "mc.http"
local host = require "mc.host"
local proc = require "support.process"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local CALLBACK = "https://onboard.example/auth/salesforce/callback"

describe("sandbox: Salesforce", function()
  local sb, base, test_base, control

  local function knobs(doc)
    assert.equal(200, assert(http.post(control .. "/config", { json = { salesforce = doc } })).status)
  end

  -- query string of a Location header -> table
  local function params_of(location)
    local out = {}
    for k, v in (location:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do
      out[k] = v:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
    end
    return out
  end

  -- authorize(query overrides, {base =, headers =}?)
  local function authorize(q, opts)
    opts = opts or {}
    local query = { response_type = "code", client_id = "ck", redirect_uri = CALLBACK,
                    state = "st/8 x&y", scope = "api refresh_token" }
    for k, v in pairs(q or {}) do query[k] = v or nil end
    return assert(http.get((opts.base or base) .. "/services/oauth2/authorize", { query = query,
      headers = opts.headers }))
  end

  local function code()
    local res = authorize()
    assert.equal(302, res.status, res.body)
    return assert(params_of(res.headers["location"]).code)
  end

  local function token(form, at)
    return assert(http.post((at or base) .. "/services/oauth2/token", { form = form }))
  end

  -- the code's token response, exchanged at the host `at` (default /salesforce)
  local function exchange(res, at)
    assert.equal(302, res.status, res.body)
    local t = token({ grant_type = "authorization_code", code = assert(params_of(res.headers["location"]).code),
      client_id = "ck", client_secret = "cs", redirect_uri = CALLBACK }, at)
    assert.equal(200, t.status, t.body)
    return t:json()
  end

  local function identity(t)
    local res = assert(http.get(t.id, { headers = { Authorization = "Bearer " .. t.access_token } }))
    assert.equal(200, res.status, res.body)
    return res:json()
  end

  local function org_state(org_id)
    local res = assert(http.get(control .. "/salesforce/orgs/" .. org_id))
    return res:json(), res.status
  end

  local function login()
    local res = token({ grant_type = "authorization_code", code = code(), client_id = "ck",
                        client_secret = "cs", redirect_uri = CALLBACK })
    assert.equal(200, res.status, res.body)
    return res:json()
  end

  local function apex(tok, path, body, method)
    return assert(http.request({ method = method or "POST", url = base .. "/services/apexrest/" .. path,
      headers = { Authorization = "Bearer " .. tok, ["Content-Type"] = "application/json" }, body = body }))
  end

  setup(function()
    local url
    sb, url = sandbox.start(12)
    base = url .. "/salesforce"
    test_base = url .. "/salesforce-test"
    control = url .. "/__sandbox"
  end)
  teardown(function() sb:stop() end)
  before_each(function()
    assert.equal(204, assert(http.post(control .. "/reset")).status)
    knobs({ auto_approve = true, client_id = "ck", client_secret = "cs" })
  end)

  describe("authorize", function()
    it("shows a login page whose form approves back to the redirect_uri with code and state", function()
      knobs({ auto_approve = false })
      local page = authorize()
      assert.equal(200, page.status)
      assert.matches("text/html", page.headers["content-type"])
      assert.matches('<form method="POST" action="/salesforce/services/oauth2/authorize">', page.body, 1, true)
      assert.matches('name="state" value="st/8 x&amp;y"', page.body, 1, true)
      local form = { action = "allow" }
      for name, value in page.body:gmatch('type="hidden" name="([%w_]+)" value="([^"]*)"') do
        form[name] = value:gsub("&amp;", "&")
      end
      local res = assert(http.post(base .. "/services/oauth2/authorize", { form = form }))
      assert.equal(302, res.status)
      local p = params_of(res.headers["location"])
      assert.equal(1, select(2, res.headers["location"]:gsub("^" .. CALLBACK:gsub("%p", "%%%0") .. "%?", "")))
      assert.is_string(p.code)
      assert.equal("st/8 x&y", p.state)
      form.action = "deny"
      assert.equal("access_denied", params_of(assert(http.post(base .. "/services/oauth2/authorize",
        { form = form })).headers["location"]).error)
    end)

    it("redirects straight back with auto_approve, echoing state", function()
      local res = authorize()
      assert.equal(302, res.status)
      local p = params_of(res.headers["location"])
      assert.matches("^aPr%w+$", p.code)
      assert.equal("st/8 x&y", p.state)
    end)

    it("redirects with error=access_denied when the user denies (knob deny)", function()
      knobs({ deny = true })
      local p = params_of(authorize().headers["location"])
      assert.equal("access_denied", p.error)
      assert.equal("end-user denied authorization", p.error_description)
      assert.equal("st/8 x&y", p.state)
      assert.is_nil(p.code)
    end)

    it("sends a bad client_id or redirect_uri to Salesforce's error page, never to the client", function()
      knobs({ redirect_uris = { CALLBACK } })
      for _, case in ipairs({
        { { client_id = "nope" }, "invalid_client_id" },
        { { client_id = false }, "invalid_client_id" },
        { { redirect_uri = "https://evil.example/cb" }, "redirect_uri_mismatch" },
        { { redirect_uri = false }, "redirect_uri_mismatch" },
      }) do
        local res = authorize(case[1])
        assert.equal(302, res.status)
        local location = res.headers["location"]
        assert.matches("^" .. base:gsub("%p", "%%%0") .. "/setup/secur/RemoteAccessErrorPage%.apexp%?", location)
        assert.equal(case[2], params_of(location).error)
        local page = assert(http.get(location))
        assert.equal(200, page.status)
        assert.matches(case[2], page.body, 1, true)
      end
    end)

    it("refuses a response_type other than code, back at the client", function()
      local p = params_of(authorize({ response_type = "token" }).headers["location"])
      assert.equal("unsupported_response_type", p.error)
      assert.equal("st/8 x&y", p.state)
    end)
  end)

  describe("token", function()
    it("exchanges a code once for the real token response", function()
      local c = code()
      local res = token({ grant_type = "authorization_code", code = c, client_id = "ck",
                          client_secret = "cs", redirect_uri = CALLBACK })
      assert.equal(200, res.status)
      local t = res:json()
      assert.matches("^00D5e000000AbCd!AQ", t.access_token)
      assert.matches("^5Aep", t.refresh_token)
      assert.equal(base, t.instance_url)
      assert.equal(base .. "/id/00D5e000000AbCdEAK/0055e000001XyZwAAK", t.id)
      assert.equal("Bearer", t.token_type)
      assert.equal("api refresh_token", t.scope)
      assert.matches("^%d+$", t.issued_at)
      assert.is_true(math.abs(tonumber(t.issued_at) / 1000 - os.time()) < 120)
      local crypto = require "mc.crypto"
      assert.equal(crypto.to_base64(crypto.hmac_sha256("cs", t.id .. t.issued_at)), t.signature)
      local again = token({ grant_type = "authorization_code", code = c, client_id = "ck",
                            client_secret = "cs", redirect_uri = CALLBACK })
      assert.equal(400, again.status)
      assert.same({ error = "invalid_grant", error_description = "expired authorization code" }, again:json())
    end)

    it("issues no refresh token when the scope does not allow it", function()
      local p = params_of(authorize({ scope = "api" }).headers["location"])
      local t = token({ grant_type = "authorization_code", code = p.code, client_id = "ck",
                        client_secret = "cs", redirect_uri = CALLBACK }):json()
      assert.is_string(t.access_token)
      assert.is_nil(t.refresh_token)
    end)

    it("answers the OAuth error bodies for bad grants and clients", function()
      local function err(form, status, e)
        local res = token(form)
        assert.equal(status, res.status, res.body)
        assert.equal(e, res:json().error)
        assert.is_string(res:json().error_description)
      end
      local c = code()
      err({ grant_type = "password", client_id = "ck" }, 400, "unsupported_grant_type")
      err({ grant_type = "authorization_code", code = c, client_id = "other", client_secret = "cs",
            redirect_uri = CALLBACK }, 400, "invalid_client_id")
      err({ grant_type = "authorization_code", code = c, client_id = "ck", client_secret = "wrong",
            redirect_uri = CALLBACK }, 400, "invalid_client")
      err({ grant_type = "authorization_code", code = c, client_id = "ck", client_secret = "cs",
            redirect_uri = CALLBACK .. "x" }, 400, "redirect_uri_mismatch")
      -- the mismatch spent the code
      err({ grant_type = "authorization_code", code = c, client_id = "ck", client_secret = "cs",
            redirect_uri = CALLBACK }, 400, "invalid_grant")
      err({ grant_type = "authorization_code", code = "aPrMadeUp", client_id = "ck", client_secret = "cs",
            redirect_uri = CALLBACK }, 400, "invalid_grant")
      err({ grant_type = "refresh_token", refresh_token = "5AepNope", client_id = "ck", client_secret = "cs" },
        400, "invalid_grant")
      knobs({ grant_error = "inactive_user" })
      err({ grant_type = "refresh_token", refresh_token = "x", client_id = "ck" }, 400, "inactive_user")
    end)

    it("refreshes: a new access token, no refresh token unless rotation is on", function()
      local t = login()
      local res = token({ grant_type = "refresh_token", refresh_token = t.refresh_token, client_id = "ck",
                          client_secret = "cs" })
      assert.equal(200, res.status)
      local r = res:json()
      assert.is_nil(r.refresh_token)
      assert.are_not.equal(t.access_token, r.access_token)
      assert.equal(t.id, r.id)
      assert.equal(t.instance_url, r.instance_url)
      knobs({ refresh_rotation = true })
      local rotated = token({ grant_type = "refresh_token", refresh_token = t.refresh_token, client_id = "ck",
                              client_secret = "cs" }):json()
      assert.matches("^5Aep", rotated.refresh_token)
      assert.equal(400, token({ grant_type = "refresh_token", refresh_token = t.refresh_token, client_id = "ck",
                                client_secret = "cs" }).status)
    end)
  end)

  describe("identity URL", function()
    it("answers the identity document for the token's user", function()
      knobs({ username = "jane@acme.example" })
      local t = login()
      local res = assert(http.get(t.id, { headers = { Authorization = "Bearer " .. t.access_token } }))
      assert.equal(200, res.status)
      local doc = res:json()
      assert.equal("00D5e000000AbCdEAK", doc.organization_id)
      assert.equal("0055e000001XyZwAAK", doc.user_id)
      assert.equal("jane@acme.example", doc.username)
      assert.is_string(doc.display_name)
      assert.equal(t.id, doc.id)
      assert.equal(base .. "/services/data/v{version}/", doc.urls.rest)
    end)

    it("logs a fixture user into their own org (login_hint, or the login form's username)", function()
      local res = authorize({ login_hint = "admin@globex.example" })
      assert.equal(302, res.status, res.body)
      local c = assert(params_of(res.headers["location"]).code)
      local t = token({ grant_type = "authorization_code", code = c, client_id = "ck", client_secret = "cs",
                        redirect_uri = CALLBACK }):json()
      assert.matches("/id/00D5e000000GlBxEAK/0055e000002GlBaAAK$", t.id)
      local doc = assert(http.get(t.id, { headers = { Authorization = "Bearer " .. t.access_token } })):json()
      assert.equal("00D5e000000GlBxEAK", doc.organization_id)
      assert.equal("admin@globex.example", doc.username)
      -- the login form: its username field picks the user
      knobs({ auto_approve = mc.null })
      local form = assert(http.post(base .. "/services/oauth2/authorize", { form = {
        response_type = "code", client_id = "ck", redirect_uri = CALLBACK, state = "s",
        username = "admin@initrode.example", action = "allow" } }))
      assert.equal(302, form.status)
      local t2 = token({ grant_type = "authorization_code", code = params_of(form.headers["location"]).code,
        client_id = "ck", client_secret = "cs", redirect_uri = CALLBACK }):json()
      assert.matches("/id/00D5e000000InTcEAK/", t2.id)
    end)

    it("logs in a synthetic org's admin by login_hint", function()
      local org = orgs.synthetic(777)
      local t = exchange(authorize({ login_hint = "admin@org777.example" }))
      assert.equal(base .. "/id/" .. org.org_id .. "/" .. org.users[1].user_id, t.id)
      assert.equal(org.org_id:sub(1, 15), t.access_token:match("^(%w+)!"))
      local doc = identity(t)
      assert.equal(org.org_id, doc.organization_id)
      assert.equal(org.users[1].user_id, doc.user_id)
      assert.equal("admin@org777.example", doc.username)
    end)

    it("takes the browser's session (X-Sandbox-Login) as the user when no login_hint names one", function()
      local session = { ["X-Sandbox-Login"] = "admin@org12.example" }
      local t = exchange(authorize(nil, { headers = session }))
      assert.equal(orgs.synthetic(12).org_id, identity(t).organization_id)
      -- login_hint wins over the session
      t = exchange(authorize({ login_hint = "admin@globex.example" }, { headers = session }))
      assert.equal("00D5e000000GlBxEAK", identity(t).organization_id)
      -- the login form shows the session's user, and its POST without a username logs them in
      knobs({ auto_approve = mc.null })
      local page = authorize(nil, { headers = session })
      assert.equal(200, page.status)
      assert.matches('name="username" value="admin@org12.example"', page.body, 1, true)
      local form = assert(http.post(base .. "/services/oauth2/authorize", { headers = session, form = {
        response_type = "code", client_id = "ck", redirect_uri = CALLBACK, state = "s", action = "allow" } }))
      assert.equal(orgs.synthetic(12).org_id, identity(exchange(form)).organization_id)
      -- someone Salesforce does not know: the default org, as without a session
      knobs({ auto_approve = true })
      t = exchange(authorize(nil, { headers = { ["X-Sandbox-Login"] = "nobody@nowhere.example" } }))
      assert.equal("00D5e000000AbCdEAK", identity(t).organization_id)
    end)

    it("logs a sandbox org's user in only at /salesforce-test, a production org's only at /salesforce", function()
      local umbrella = { login_hint = "admin@umbrella.example.sandbox" }
      local function refused(res)
        assert.equal(200, res.status)
        assert.is_nil(res.headers["location"])
        assert.matches("text/html", res.headers["content-type"])
        assert.matches("Please check your username and password", res.body, 1, true)
      end
      -- the sandbox org at test.salesforce.com: tokens and identity from that host
      local t = exchange(authorize(umbrella, { base = test_base }), test_base)
      assert.equal(test_base, t.instance_url)
      assert.equal(test_base .. "/id/00D5e000000UmBrEAK/0055e000004UmBaAAK", t.id)
      local doc = identity(t)
      assert.equal("00D5e000000UmBrEAK", doc.organization_id)
      assert.equal("admin@umbrella.example.sandbox", doc.username)
      assert.equal(test_base .. "/services/data/v{version}/", doc.urls.rest)
      -- at the production host: the login error page, by auto_approve and by the form
      refused(authorize(umbrella))
      refused(authorize(nil, { headers = { ["X-Sandbox-Login"] = "admin@umbrella.example.sandbox" } }))
      local form = { response_type = "code", client_id = "ck", redirect_uri = CALLBACK, state = "s",
                     username = "admin@umbrella.example.sandbox", action = "allow" }
      knobs({ auto_approve = mc.null })
      refused(assert(http.post(base .. "/services/oauth2/authorize", { form = form })))
      -- production users (fixture and synthetic) are refused at the test host
      form.username = "admin@globex.example"
      refused(assert(http.post(test_base .. "/services/oauth2/authorize", { form = form })))
      knobs({ auto_approve = true })
      refused(authorize({ login_hint = "admin@org5.example" }, { base = test_base }))
      refused(authorize({ login_hint = "admin@acme.example" }, { base = test_base }))
      -- denial and client errors keep their answers at the test host
      assert.matches("^" .. test_base:gsub("%p", "%%%0") .. "/setup/secur/RemoteAccessErrorPage",
        authorize({ client_id = "nope" }, { base = test_base }).headers["location"])
    end)

    it("refuses a bad token (401 INVALID_SESSION_ID) and another org's URL", function()
      local t = login()
      local res = assert(http.get(t.id, { headers = { Authorization = "Bearer 00Dbogus" } }))
      assert.equal(401, res.status)
      assert.same({ { message = "Session expired or invalid", errorCode = "INVALID_SESSION_ID" } }, res:json())
      assert.equal(401, assert(http.get(t.id)).status)
      local other = base .. "/id/00D000000000001AAA/0055e000001XyZwAAK"
      res = assert(http.get(other, { headers = { Authorization = "Bearer " .. t.access_token } }))
      assert.equal(403, res.status)
      knobs({ identity_errors = "identity" })
      res = assert(http.get(t.id, { headers = { Authorization = "Bearer 00Dbogus" } }))
      assert.equal(403, res.status)
      assert.equal("Bad_OAuth_Token", res.body)
    end)
  end)

  describe("Apex REST AuthConnection", function()
    local BODY = '{"connectionId":"b3b1c0de","authorizeUrl":"https://connect.example/auth/x"}'

    it("stores the posted values in the org's Connection__c and answers 200, empty", function()
      local t = login()
      assert.equal(mc.null, org_state("00D5e000000AbCdEAK").Connection__c)
      local res = apex(t.access_token, "AuthConnection", BODY)
      assert.equal(200, res.status, res.body)
      assert.equal("", res.body)
      local record = org_state("00D5e000000AbCdEAK").Connection__c
      assert.equal("https://connect.example/auth/x", record.Auth_URL__c)
      assert.equal("b3b1c0de", record.Connection_Id__c)
      assert.matches("^a005e%w+$", record.Id)
      local state = assert(http.get(control .. "/state")):json()
      assert.equal(record.Id, state["sandbox:salesforce:org:00D5e000000AbCdEAK:Connection__c"].Id)
      -- upserts the same record
      apex(t.access_token, "AuthConnection", '{"connectionId":"c2","authorizeUrl":"https://connect.example/2"}')
      local again = org_state("00D5e000000AbCd").Connection__c -- a 15-character id names it too
      assert.equal(record.Id, again.Id)
      assert.equal("https://connect.example/2", again.Auth_URL__c)
    end)

    it("keeps one Connection__c per org: the session's", function()
      local tokens = {}
      for i = 1, 5 do
        tokens[i] = exchange(authorize({ login_hint = "admin@org" .. (100 + i) .. ".example" }))
      end
      local sandboxed = exchange(authorize({ login_hint = "admin@umbrella.example.sandbox" }, { base = test_base }),
        test_base)
      for i, t in ipairs(tokens) do
        assert.equal(200, apex(t.access_token, "AuthConnection", string.format(
          '{"connectionId":"conn-%d","authorizeUrl":"https://connect.example/auth/%d"}', i, i)).status)
      end
      local res = assert(http.request({ method = "POST",
        url = sandboxed.instance_url .. "/services/apexrest/AuthConnection",
        headers = { Authorization = "Bearer " .. sandboxed.access_token }, body = BODY }))
      assert.equal(200, res.status, res.body)
      local ids = {}
      for i = 1, 5 do
        local org = orgs.synthetic(100 + i)
        local doc = org_state(org.org_id)
        assert.equal("Org " .. (100 + i), doc.name)
        assert.equal("production", doc.environment)
        assert.equal("conn-" .. i, doc.Connection__c.Connection_Id__c)
        assert.equal("https://connect.example/auth/" .. i, doc.Connection__c.Auth_URL__c)
        assert.is_nil(ids[doc.Connection__c.Id])
        ids[doc.Connection__c.Id] = true
      end
      local umbrella = org_state("00D5e000000UmBrEAK")
      assert.equal("sandbox", umbrella.environment)
      assert.equal("b3b1c0de", umbrella.Connection__c.Connection_Id__c)
      assert.equal(mc.null, org_state("00D5e000000AbCdEAK").Connection__c) -- the default org got none
      local _, status = org_state("00D000000000001AAA")
      assert.equal(404, status)
    end)

    it("needs the namespace when the package is managed; other paths are NOT_FOUND", function()
      knobs({ namespace = "hcpoc" })
      local t = login()
      assert.equal(200, apex(t.access_token, "hcpoc/AuthConnection", BODY).status)
      for _, path in ipairs({ "AuthConnection", "/hcpoc/AuthConnection", "other/AuthConnection", "hcpoc/Nope" }) do
        local res = apex(t.access_token, path, BODY)
        assert.equal(404, res.status, path)
        assert.same({ { errorCode = "NOT_FOUND", message = "Could not find a match for URL" } }, res:json())
      end
    end)

    it("answers the REST error envelope: 400, 403, 405, 500", function()
      local t = login()
      local function code_of(res) return res:json()[1].errorCode end
      local res = apex(t.access_token, "AuthConnection", '{"connectionId":"x","authURL":"y"}')
      assert.equal(400, res.status)
      assert.equal("JSON_PARSER_ERROR", code_of(res))
      assert.matches("authURL", res:json()[1].message, 1, true)
      assert.equal("JSON_PARSER_ERROR", code_of(apex(t.access_token, "AuthConnection", "not json")))
      assert.equal("JSON_PARSER_ERROR", code_of(apex(t.access_token, "AuthConnection", '{"connectionId":5}')))
      res = apex(t.access_token, "AuthConnection", nil, "GET")
      assert.equal(405, res.status)
      assert.equal("METHOD_NOT_ALLOWED", code_of(res))
      knobs({ apex_access = false })
      res = apex(t.access_token, "AuthConnection", BODY)
      assert.equal(403, res.status)
      assert.equal("FORBIDDEN", code_of(res))
      knobs({ apex_access = true, apex_error = true })
      res = apex(t.access_token, "AuthConnection", BODY)
      assert.equal(500, res.status)
      assert.equal("APEX_ERROR", code_of(res))
      assert.equal(mc.null, org_state("00D5e000000AbCdEAK").Connection__c)
    end)

    it("answers 401 INVALID_SESSION_ID once the token expires, and works again after a refresh", function()
      knobs({ token_ttl = 0.5 })
      local t = login()
      assert.equal(200, apex(t.access_token, "AuthConnection", BODY).status)
      local res = proc.wait_for(function()
        local r = apex(t.access_token, "AuthConnection", BODY)
        return r.status ~= 200 and r
      end, 5, "the access token to stop working")
      assert.equal(401, res.status)
      assert.same({ { message = "Session expired or invalid", errorCode = "INVALID_SESSION_ID" } }, res:json())
      local r = token({ grant_type = "refresh_token", refresh_token = t.refresh_token, client_id = "ck",
                        client_secret = "cs" }):json()
      assert.equal(200, apex(r.access_token, "AuthConnection", BODY).status)
      assert.equal(401, apex("garbage", "AuthConnection", BODY).status)
    end)
  end)

  it("injects failures in Salesforce's envelope by knob", function()
    knobs({ fail_next = 1, fail_status = 503 })
    local res = authorize()
    assert.equal(503, res.status)
    assert.equal("SERVER_UNAVAILABLE", res:json()[1].errorCode)
    assert.equal(302, authorize().status)
  end)
end)
