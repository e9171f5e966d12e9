-- Onboarding's failure paths, end to end (web, worker, sandbox as processes):
-- what the callback refuses, what the workflow retries, what stops an org and
-- how it resumes. Redis dbs 3 (app) and 5 (sandbox); database mc_onboarding_failures.
local stack = require "support.stack"
local json = require "mc.json"
local http = require "mc.http"
local host = require "mc.host"
local redis = require "mc.redis"
local proc = require "support.process"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local function org(i)
  local o = orgs.synthetic(i)
  return { org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username }
end

local function count(s, sql, ...)
  return assert(s.pg:query(sql, ...))[1].n
end

local function events(s, org_id, kind)
  return assert(s.pg:query("SELECT * FROM onboarding_events WHERE org_id = $1 AND kind = $2 ORDER BY id", org_id, kind))
end

-- install_denied(s, i) -> doc: installs org i with its admin saying no, and waits
-- for the simulated admin's one (denied) try
local function install_denied(s, i)
  s:knobs({ salesforce = { deny = true } })
  local doc = org(i)
  assert.are.equal(202, s:post_install(doc).status)
  assert(proc.wait_for(function() return #events(s, doc.org_id, "failure") > 0 end, 30),
    "no denied try by the admin\n" .. s:logs())
  return doc
end

-- wait_addon_post(s, doc): waits until the worker's add-on POST for the org
-- hangs in the sandbox (knob heroku.latency): a POST stalled after the org's
-- add-on look-up (404)
local function wait_addon_post(s, doc)
  local looked_up = "/heroku/apps/mc-spec/addons/mc-spec-hc-" .. doc.org_id:lower() .. "\" status=404"
  local posted = 'msg="sandbox stalls a request" method=POST path=/heroku/apps/mc-spec/addons '
  assert(proc.wait_for(function()
    local log = s.sandbox:log()
    local after = log:find(looked_up, 1, true)
    return after and log:find(posted, after, true)
  end, 10), "the add-on POST did not reach the sandbox\n" .. s:logs())
end

describe("onboarding failure paths", function()
  local s, tenants, cleanup
  setup(function()
    tenants, cleanup = proc.tmpdir()
    os.execute("cp " .. proc.quote(host.root .. "/scripts/tenants/default.lua") .. " " .. proc.quote(tenants))
    s = stack.start({ name = "onboarding_failures", app_db = 3, sandbox_db = 5,
      env = { TENANTS_DIR = tenants, TENANT_HOOK_TIMEOUT = "0.5", WORKER_HEARTBEAT_TTL = "2",
              ONBOARDING_MAX_ATTEMPTS = "6" } })
  end)
  teardown(function()
    if s then s:stop() end
    cleanup()
  end)
  after_each(function() -- back to the stack's knobs
    s:knobs({ heroku = { latency = 0, fail_next = 0 }, connect = { fail_next = 0, config_delay = 0.3 },
      salesforce = { deny = false, token_ttl = 7200, grant_error = false }, sendgrid = { simulated_admin = true } })
  end)

  describe("the install callback", function()
    local doc = org(101)
    local body = json.encode(doc)

    it("refuses a bad signature with 401 and stores nothing", function()
      local h = stack.sign(body, nil, "not-the-secret")
      local res = s:post_install(body, h)
      assert.are.equal(401, res.status)
      assert.are.equal("bad signature", res:json().error)
      local missing = s:post_install(body, { ["Content-Type"] = "application/json" })
      assert.are.equal(401, missing.status)
      assert.are.equal(0, count(s, "SELECT count(*) AS n FROM organizations WHERE org_id = $1", doc.org_id))
    end)

    it("refuses a stale timestamp", function()
      local res = s:post_install(body, stack.sign(body, math.floor(host.time()) - 301))
      assert.are.equal(401, res.status)
      assert.matches("stale", res:json().error)
      res = s:post_install(body, stack.sign(body, math.floor(host.time()) + 400))
      assert.are.equal(401, res.status)
    end)

    it("refuses a replayed request, even a valid one", function()
      local h = stack.sign(body)
      assert.are.equal(202, s:post_install(body, h).status)
      local again = s:post_install(body, h)
      assert.are.equal(401, again.status)
      assert.matches("replayed", again:json().error)
    end)

    it("lets the very same request through again after a database failure, and after any other refusal", function()
      local d = org(131)
      local b = json.encode(d)
      local h = stack.sign(b)
      -- the signature is accepted, then the database fails: 503, and the key is given back
      assert(s.pg:exec("ALTER TABLE organizations RENAME TO organizations_away"))
      local res = s:post_install(b, h)
      local _, show = s:get_org(d.org_id) -- an operator's read during the outage: 503, not a 500
      assert(s.pg:exec("ALTER TABLE organizations_away RENAME TO organizations"))
      assert.are.equal(503, res.status, res.body)
      assert.are.equal("the database is unavailable", res:json().error)
      assert.are.equal(503, show.status, show.body)
      assert.are.equal(202, s:post_install(b, h).status) -- the package's resend
      -- a 409 gives it back too: a resend is answered 409 again, not "replayed"
      local dup = json.encode({ org_id = d.org_id, org_name = d.org_name, admin_email = d.admin_email, nonce = "dup" })
      h = stack.sign(dup)
      assert.are.equal(409, s:post_install(dup, h).status)
      assert.are.equal(409, s:post_install(dup, h).status)
    end)

    it("answers a malformed body with 400 and field errors", function()
      local res = s:post_install("{not json")
      assert.are.equal(400, res.status)
      assert.matches("not valid JSON", res:json().error)
      res = s:post_install({ org_id = "00D5e000000AbCdEAX", org_name = "", admin_email = "nope", colour = "red",
        environment = "moon", is_upgrade = "yes" })
      assert.are.equal(400, res.status)
      local f = res:json().fields
      assert.matches("checksum", f.org_id)
      assert.is_string(f.org_name)
      assert.matches("e%-mail", f.admin_email)
      assert.matches("not a known field", f.colour)
      assert.is_string(f.environment)
      assert.is_string(f.is_upgrade)
      res = s:post_install({ org_id = "005000000000001", org_name = "x", admin_email = "a@b.example" })
      assert.matches("organization id", res:json().fields.org_id)
      res = s:post_install({ org_id = "00D5e000000AbCd", org_name = "x", admin_email = "a@b.example",
        environment = "custom" })
      assert.matches("required", res:json().fields.login_domain)
    end)

    it("answers a second install of the same org with 409, and a 15-character id is the same org", function()
      local res = s:post_install({ org_id = doc.org_id:sub(1, 15), org_name = doc.org_name,
        admin_email = doc.admin_email })
      assert.are.equal(409, res.status)
      assert.are.equal(doc.org_id:sub(1, 15), res:json().error:match("00D%w+"):sub(1, 15))
      assert.are.equal(1, count(s, "SELECT count(*) AS n FROM organizations WHERE org_id = $1", doc.org_id))
    end)

    it("keeps the state page for operators", function()
      local res = assert(http.get(s.web_url .. "/organizations/" .. doc.org_id))
      assert.are.equal(401, res.status)
      res = assert(http.get(s.web_url .. "/organizations/" .. doc.org_id,
        { headers = { Authorization = "Bearer wrong-token-0123456789" } }))
      assert.are.equal(401, res.status)
      local shown = assert(s:get_org(doc.org_id))
      assert.is_string(shown.next_action)
      assert.is_nil(shown.access_token)
      local admin = { Authorization = "Bearer " .. stack.ADMIN_TOKEN }
      local unknown = org(199).org_id
      local _, missing = s:get_org(unknown)
      assert.are.equal(404, missing.status)
      res = assert(http.post(s.web_url .. "/organizations/" .. unknown .. "/resume", { headers = admin }))
      assert.are.equal(404, res.status)
      res = assert(http.post(s.web_url .. "/organizations/" .. doc.org_id .. "/resume", { headers = admin }))
      assert.are.equal(409, res.status)
      assert.matches("not failed", res:json().error)
      local gone = json.encode({ org_id = unknown })
      res = assert(http.request{ method = "DELETE", url = s.web_url .. "/organizations/" .. unknown,
        body = gone, headers = stack.sign(gone) })
      assert.are.equal(404, res.status)
      res = assert(http.get(s.web_url .. "/connection_auth_complete/v1.k1.forged"))
      assert.are.equal(404, res.status)
    end)
  end)

  it("re-imports the mapping when an active org's package is upgraded", function()
    local doc = org(102)
    assert.are.equal(202, s:post_install(doc).status)
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    local res = s:post_install({ org_id = doc.org_id, org_name = doc.org_name, admin_email = doc.admin_email,
      is_upgrade = true, previous_version = "1.2" })
    assert.are.equal(202, res.status, res.body)
    assert.are.equal("connect_authorized", res:json().state)
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    local imports = assert(s.pg:query([[SELECT count(*) AS n FROM onboarding_events
      WHERE org_id = $1 AND to_state = 'mappings_imported' AND kind = 'transition']], doc.org_id))[1].n
    assert.are.equal(2, imports)
  end)

  it("signs a sandbox org in at test.salesforce.com and tells Connect", function()
    local o = orgs.by_username("admin@umbrella.example.sandbox")
    local doc = { org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username, environment = "sandbox" }
    assert.are.equal(202, s:post_install(doc).status)
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    local row = assert(s.pg:query("SELECT instance_url FROM organizations WHERE org_id = $1", doc.org_id))[1]
    assert.matches("/salesforce%-test$", row.instance_url)
  end)

  it("retries the Platform API's 429 and 5xx, then carries on", function()
    local r = assert(redis.connect((os.getenv("REDIS_URL"):gsub("/%d*$", "")) .. "/5"))
    local bucket = "sandbox:heroku:ratebucket:spec-heroku-token" -- sandbox/heroku.lua's
    assert(r:call("HSET", bucket, "tokens", "0", "at", "0")) -- spent, and not refilling:
    s:knobs({ heroku = { fail_next = 1, fail_status = 500, rate_refill = 0 },
              connect = { fail_next = 2, fail_status = 502 } })
    local doc = org(103)
    assert.are.equal(202, s:post_install(doc).status)
    assert(proc.wait_for(function()
      for _, e in ipairs(events(s, doc.org_id, "retry")) do
        if e.details.error:find("429", 1, true) then return true end
      end
    end, 20), s:logs())
    assert(r:call("DEL", bucket)) -- a new bucket is full
    r:close()
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    local text = {}
    for _, e in ipairs(events(s, doc.org_id, "retry")) do text[#text + 1] = e.details.error end
    text = table.concat(text, "\n")
    assert.matches("heroku: HTTP 429 rate_limit", text)
    assert.matches("heroku: HTTP 500", text)
    assert.matches("HTTP 502", text)
  end)

  it("waits, without failing, while Connect has not applied the PATCH; polls don't use up the retries", function()
    s:knobs({ connect = { config_delay = 6 } })
    local doc = org(104)
    assert.are.equal(202, s:post_install(doc).status)
    -- more polls than ONBOARDING_MAX_ATTEMPTS (6), then two failures: still retried
    assert(proc.wait_for(function()
      local row = assert(s.pg:query("SELECT state, attempts FROM organizations WHERE org_id = $1", doc.org_id))[1]
      return row.state == "app_linked" and row.attempts >= 6
    end, 30), s:logs())
    s:knobs({ connect = { fail_next = 2, fail_status = 503 } })
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    local waits = events(s, doc.org_id, "wait")
    local found = false
    for _, e in ipairs(waits) do found = found or (e.details.reason or ""):find("not applied", 1, true) ~= nil end
    assert(found, "no wait for the PATCH recorded")
    assert.are.equal(2, #events(s, doc.org_id, "retry"))
  end)

  it("keeps an org whose admin denied access waiting for another try", function()
    local doc = install_denied(s, 105)
    assert.are.equal("awaiting_app_oauth", s:state(doc.org_id))
    assert.matches("access_denied", events(s, doc.org_id, "failure")[1].details.error)
    s:knobs({ salesforce = { deny = false } })
    -- the admin opens the mail's link again
    local res = assert(http.get(s:authenticate_url(doc.org_id),
      { follow = 10, headers = { ["X-Sandbox-Login"] = doc.admin_email } }))
    assert.are.equal(200, res.status, res.body)
    assert(s:wait_state(doc.org_id, "awaiting_connect_oauth", 30) or s:state(doc.org_id) ~= "awaiting_app_oauth")
  end)

  it("takes the admin's sign-in before the worker has committed the step that mailed the link", function()
    -- the mail leaves from inside the step's transaction: a quick admin finds the
    -- org still in authorize_url_ready (simulated here by putting it back there)
    local doc = install_denied(s, 116)
    s:knobs({ salesforce = { deny = false } })
    assert(s.pg:query("UPDATE organizations SET state = 'authorize_url_ready', next_attempt_at = NULL"
      .. " WHERE org_id = $1", doc.org_id))
    local res = assert(http.get(s:authenticate_url(doc.org_id),
      { follow = 10, headers = { ["X-Sandbox-Login"] = doc.admin_email } }))
    assert.are.equal(200, res.status, res.body)
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
  end)

  it("answers an unknown or reused OAuth state with a page, and moves nothing", function()
    local res = assert(http.get(s.web_url .. "/auth/salesforce/callback?code=abc&state=forged-state"))
    assert.are.equal(400, res.status)
    assert.matches("expired", res.body)
    assert.matches("^text/html", res.headers["content-type"])
    res = assert(http.get(s.web_url .. "/authenticate?org=00D5e000000AbCdEAX"))
    assert.are.equal(400, res.status)
    -- an org id alone, or another org's token, does not start a sign-in
    local known = org(102).org_id
    res = assert(http.get(s.web_url .. "/authenticate?org=" .. known))
    assert.are.equal(403, res.status)
    local other = s:authenticate_url(org(101).org_id):match("t=([^&]+)")
    res = assert(http.get(s.web_url .. "/authenticate?org=" .. known .. "&t=" .. other))
    assert.are.equal(403, res.status)
    local ring = assert(require("mc.crypto").keyring(stack.KEYS))
    local stale = http.escape(ring:seal(known .. ":" .. (os.time() - 1), "authenticate"))
    res = assert(http.get(s.web_url .. "/authenticate?org=" .. known .. "&t=" .. stale))
    assert.are.equal(403, res.status)
    assert.matches("expired", res.body)
    -- a real state, used twice: the second use is refused (the simulated admin
    -- has had its one denied try before the test signs in)
    local doc = install_denied(s, 113)
    s:knobs({ salesforce = { deny = false } })
    local hop = assert(http.get(s:authenticate_url(doc.org_id)))
    assert.are.equal(302, hop.status)
    local sf = assert(http.get(hop.headers.location, { headers = { ["X-Sandbox-Login"] = doc.admin_email } }))
    assert.are.equal(302, sf.status)
    local back = sf.headers.location
    local first = assert(http.get(back))
    assert.are.equal(200, first.status, s.web:log():match("handler failed[^\n]*") or first.body)
    local again = assert(http.get(back))
    assert.are.equal(400, again.status)
    assert.matches("already used", again.body)
  end)

  it("refreshes an expired Salesforce session before writing to the org", function()
    -- the org waits for its admin (who says no at first) ...
    local doc = install_denied(s, 106)
    -- ... signs in while no worker runs, with sessions that live one second ...
    s.worker:stop()
    s:knobs({ salesforce = { deny = false, token_ttl = 1 } })
    local res = assert(http.get(s:authenticate_url(doc.org_id),
      { follow = 10, headers = { ["X-Sandbox-Login"] = doc.admin_email } }))
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("app_authorized", s:state(doc.org_id))
    -- ... so the stored access token is dead when the Apex write comes
    s:wait_sessions_dead(doc.org_id)
    s:start_worker()
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    res = assert(http.get(s.sandbox_url .. "/__sandbox/salesforce/orgs/" .. doc.org_id))
    local record = res:json().Connection__c
    assert.is_table(record)
    assert.matches("/sandbox/authorize/", record.Auth_URL__c)
    local row = assert(s.pg:query("SELECT connection_id FROM organizations WHERE org_id = $1", doc.org_id))[1]
    assert.are.equal(row.connection_id, record.Connection_Id__c)
    assert.matches("salesforce session refreshed", s.worker:log())
  end)

  it("asks the admin to sign in again when the org's refresh token is dead", function()
    s:knobs({ sendgrid = { simulated_admin = false } }) -- the admin reads no mail: the test signs in
    local doc = org(119)
    assert.are.equal(202, s:post_install(doc).status)
    assert(proc.wait_for(function() return s:state(doc.org_id) == "awaiting_app_oauth" end, 30), s:logs())
    s.worker:stop()
    s:knobs({ salesforce = { token_ttl = 1 } })
    local res = assert(http.get(s:authenticate_url(doc.org_id),
      { follow = 10, headers = { ["X-Sandbox-Login"] = doc.admin_email } }))
    assert.are.equal(200, res.status, res.body)
    -- the session expires and Salesforce refuses the refresh token
    s:wait_sessions_dead(doc.org_id)
    s:knobs({ salesforce = { grant_error = "invalid_grant" } })
    s:start_worker()
    assert(proc.wait_for(function() return s:state(doc.org_id) == "awaiting_app_oauth" end, 30), s:logs())
    local rows = assert(s.pg:query([[SELECT details FROM onboarding_events WHERE org_id = $1
      AND from_state = 'app_authorized' AND to_state = 'authorize_url_ready']], doc.org_id))
    assert.matches("invalid_grant", rows[1].details.reauth)
    local row = assert(s.pg:query("SELECT access_token FROM organizations WHERE org_id = $1", doc.org_id))[1]
    assert.are.equal(mc.null, row.access_token)
    -- the admin signs in again, and the onboarding goes on
    s:knobs({ salesforce = { grant_error = false, token_ttl = 7200 }, sendgrid = { simulated_admin = true } })
    res = assert(http.get(s:authenticate_url(doc.org_id),
      { follow = 10, headers = { ["X-Sandbox-Login"] = doc.admin_email } }))
    assert.are.equal(200, res.status, res.body)
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
  end)

  it("stops the onboarding when the admin signs in to another org", function()
    local doc = org(107)
    doc.admin_email = orgs.synthetic(108).users[1].username
    assert.are.equal(202, s:post_install(doc).status)
    assert(s:wait_state(doc.org_id, "failed", 30), s:logs())
    local row = assert(s.pg:query("SELECT failed_step, last_error, access_token FROM organizations"
      .. " WHERE org_id = $1", doc.org_id))[1]
    assert.are.equal("awaiting_app_oauth", row.failed_step)
    assert.matches("signed in to org", row.last_error)
    assert.are.equal(mc.null, row.access_token)
    assert.are.equal(0, count(s, [[SELECT count(*) AS n FROM information_schema.schemata WHERE schema_name = $1]],
      "salesforce" .. doc.org_id:lower()))
  end)

  describe("tenant hooks", function()
    local function hook(org_id, src)
      proc.write(tenants .. "/" .. org_id .. ".lua", src)
    end

    it("fail the step when one loops forever, another org onboards meanwhile, and it resumes once fixed", function()
      local doc, other = org(109), org(130)
      hook(doc.org_id, "return { mapping = function(t, base) while true do end end }")
      assert.are.equal(202, s:post_install(doc).status)
      assert.are.equal(202, s:post_install(other).status) -- its hooks are the default ones
      assert(s:wait_state(doc.org_id, "failed", 60), s:logs())
      assert(s:wait_state(other.org_id, "active", 60), s:logs())
      assert.are.equal(1, #s:addons_of(other.org_id))
      local row = assert(s.pg:query("SELECT failed_step, last_error FROM organizations WHERE org_id = $1",
        doc.org_id))[1]
      assert.are.equal("connect_authorized", row.failed_step)
      assert.matches("tenant hook mapping", row.last_error)
      assert(row.last_error:find("budget", 1, true) or row.last_error:find("timeout", 1, true), row.last_error)
      os.remove(tenants .. "/" .. doc.org_id .. ".lua")
      local res = assert(http.post(s.web_url .. "/organizations/" .. doc.org_id .. "/resume",
        { headers = { Authorization = "Bearer " .. stack.ADMIN_TOKEN } }))
      assert.are.equal(202, res.status, res.body)
      assert(s:wait_state(doc.org_id, "active", 60), s:logs())
    end)

    it("fail the step with the hook's error", function()
      local doc = org(110)
      hook(doc.org_id, "return { schema_name = function(t) error('no schema for you') end }")
      assert.are.equal(202, s:post_install(doc).status)
      assert(s:wait_state(doc.org_id, "failed", 30), s:logs())
      local row = assert(s.pg:query("SELECT failed_step, last_error FROM organizations WHERE org_id = $1",
        doc.org_id))[1]
      assert.are.equal("received", row.failed_step)
      assert.matches("no schema for you", row.last_error)
      assert.are.equal(0, #s:addons_of(doc.org_id))
    end)

    it("only log a failing on_state hook: the org moves on", function()
      local doc = org(114)
      hook(doc.org_id, "return { on_state = function(t, from, to) error('on_state says no: ' .. to) end }")
      assert.are.equal(202, s:post_install(doc).status)
      assert(s:wait_state(doc.org_id, "active", 60), s:logs())
      -- the hook runs after the move commits: its line may follow the state by a moment
      assert.truthy(s.worker:wait_log("on_state says no: active", 10), s.worker:log())
      assert.matches("tenant hook on_state failed.-on_state says no: active", s.worker:log())
      assert.matches("on_state says no: app_authorized", s.web:log()) -- the web's own transitions
    end)

    it("refuse a schema another org holds, before provisioning anything", function()
      local doc = org(117)
      hook(doc.org_id, ("return { schema_name = function(t) return 'salesforce%s' end }")
        :format(org(102).org_id:lower()))
      assert.are.equal(202, s:post_install(doc).status)
      assert(s:wait_state(doc.org_id, "failed", 30), s:logs())
      local row = assert(s.pg:query("SELECT failed_step, last_error FROM organizations WHERE org_id = $1",
        doc.org_id))[1]
      assert.are.equal("received", row.failed_step)
      assert.matches("already belongs to org " .. org(102).org_id, row.last_error)
      assert.are.equal(0, #s:addons_of(doc.org_id))
    end)

    it("refuse an invalid mapping before it reaches Heroku Connect", function()
      local doc = org(111)
      hook(doc.org_id, [[return { mapping = function(t, base)
        base.mappings[1].config.fields.IsDeleted = nil
        base.mappings[1].config.access = "read_everything"
        return base end }]])
      assert.are.equal(202, s:post_install(doc).status)
      assert(s:wait_state(doc.org_id, "failed", 60), s:logs())
      local row = assert(s.pg:query("SELECT failed_step, last_error FROM organizations WHERE org_id = $1",
        doc.org_id))[1]
      assert.are.equal("connect_authorized", row.failed_step)
      assert.matches("invalid mapping", row.last_error)
      assert.matches("IsDeleted", row.last_error)
      assert.matches("access", row.last_error)
    end)
  end)

  it("loses no org and duplicates no add-on when the worker is killed mid-step", function()
    s:knobs({ heroku = { latency = 1.5 } })
    local doc = org(112)
    assert.are.equal(202, s:post_install(doc).status)
    -- the worker dies while its add-on POST is in flight (1.5 s latency): the
    -- sandbox creates the add-on, the worker never hears of it
    wait_addon_post(s, doc)
    s.worker:signal("KILL")
    assert(s.worker:wait(5))
    assert(proc.wait_for(function() return #s:addons_of(doc.org_id) == 1 end, 5), "the POST did not land")
    assert.are.equal("received", s:state(doc.org_id))
    s:start_worker()
    assert(s:wait_state(doc.org_id, "active", 90), s:logs())
    assert.are.equal(1, #s:addons_of(doc.org_id))
  end)

  it("offboards at once while a step is in a slow call, and removes the add-on that call creates", function()
    s:knobs({ heroku = { latency = 4 } })
    local doc = org(118)
    assert.are.equal(202, s:post_install(doc).status)
    wait_addon_post(s, doc)
    -- the worker is inside the add-on POST; no lock is held while it waits
    local body = json.encode({ org_id = doc.org_id })
    local res = assert(http.request{ method = "DELETE", url = s.web_url .. "/organizations/" .. doc.org_id,
      body = body, headers = stack.sign(body) })
    assert.are.equal(202, res.status, res.body)
    assert.are.equal("offboarded", res:json().state)
    -- the POST lands after the uninstall; the offboarding waits for the step and deletes
    -- the add-on it made (a DELETE that found it: 200, not 404). Between the two the
    -- add-on may exist for less than a poll of addons_of, so the sandbox's log is read.
    local name = ("mc-spec-hc-" .. doc.org_id:lower()):gsub("%-", "%%-") -- the stack's HEROKU_APP_NAME
    local deleted = 'method=DELETE path="[^"]*' .. name .. '" status=200'
    assert(proc.wait_for(function() return s.sandbox:log():find(deleted) end, 40), s:logs())
    assert.are.equal(0, #s:addons_of(doc.org_id))
    assert.are.equal("offboarded", s:state(doc.org_id)) -- the step's outcome was dropped
  end)

  it("offboards on the uninstall callback and removes the add-on", function()
    local doc = org(102)
    -- a signed uninstall of another org does not offboard this one
    local other = json.encode({ org_id = org(101).org_id })
    local res = assert(http.request{ method = "DELETE", url = s.web_url .. "/organizations/" .. doc.org_id,
      body = other, headers = stack.sign(other) })
    assert.are.equal(400, res.status)
    assert.are.equal("active", s:state(doc.org_id))
    local body = json.encode({ org_id = doc.org_id })
    res = assert(http.request{ method = "DELETE", url = s.web_url .. "/organizations/" .. doc.org_id,
      body = body, headers = stack.sign(body) })
    assert.are.equal(202, res.status, res.body)
    assert.are.equal("offboarded", s:state(doc.org_id))
    assert(proc.wait_for(function() return #s:addons_of(doc.org_id) == 0 end, 20), s:logs())
    -- unsigned: refused
    res = assert(http.request{ method = "DELETE", url = s.web_url .. "/organizations/" .. doc.org_id })
    assert.are.equal(401, res.status)
    -- a reinstall starts over
    assert.are.equal(202, s:post_install(doc).status)
    assert(s:wait_state(doc.org_id, "active", 60), s:logs())
  end)
end)
