-- organizations (scripts/organizations.lua), its handlers called in-process with
-- requests shaped as mc.web's, on a private database and Redis: the signed
-- install and uninstall callbacks (each answer, and the replay key it keeps on a
-- 2xx and gives back on anything else), and the operator's show and resume.
local host = require "mc.host"
local db = require "lib.db"
local organizations = require "organizations"
local fixture = require "support.onboarding_fixture"
local web_request = require "support.web_request"

local ORG = "00D5e000000HaNdEAK"
local OTHER = "00D5e000000OtHrEAK"
local SECRET = "spec-callback-secret"
local TOKEN = "spec-admin-token-0123456789"
local URL = "https://mc.example/organizations/" .. ORG

describe("organizations handlers", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_handlers_orgs", redis = 8, env = {
    CALLBACK_SECRET = SECRET, CALLBACK_SECRET_PREVIOUS = false, CALLBACK_SIGNATURES = false,
    CALLBACK_TOLERANCE = false, ADMIN_TOKEN = TOKEN } })

  local function install_body(fields)
    local doc = { org_id = ORG, org_name = "Hand Co", admin_email = "admin@hand.example" }
    for k, v in pairs(fields or {}) do doc[k] = v end
    return require("mc.json").encode(doc)
  end

  local function install(fields, secret)
    local body = type(fields) == "string" and fields or install_body(fields)
    return web_request.signed(secret or SECRET, body, { method = "POST", path = "/organizations" })
  end

  local function uninstall(id, body)
    return web_request.signed(SECRET, body or ('{"org_id": "' .. id .. '"}'),
      { method = "DELETE", path = "/organizations/" .. id, params = { org_id = id } })
  end

  local function operator(id, path, token)
    return web_request.new{ method = path and "POST" or "GET", path = "/organizations/" .. id .. (path or ""),
      params = { org_id = id },
      headers = { Authorization = token ~= false and ("Bearer " .. (token or TOKEN)) or nil } }
  end

  -- whether the request's signature is still held as seen (mc:callback:sig:<sig>)
  local function held(req)
    return fx.r:call("EXISTS", "mc:callback:sig:" .. req.headers["x-signature"]) == 1
  end

  local function queued()
    local out = {}
    for i, j in ipairs(fx:queued()) do out[i] = { j.class, table.unpack(j.args) } end
    return out
  end

  describe("create", function()
    it("202: a new org in received, its event, the advance job queued, the signature kept", function()
      local req = install({ installer_id = "0055e000001XyZw", package_version = "1.4" })
      local status, body, headers = organizations.create(req)
      assert.equal(202, status)
      assert.same({ org_id = ORG, state = "received", url = URL }, body)
      assert.same({ Location = URL }, headers)
      local row = fx:row(ORG)
      assert.same({ "received", "Hand Co", "admin@hand.example", "0055e000001XyZwAAK", "1.4", "production" },
        { row.state, row.org_name, row.admin_email, row.installer_id, row.package_version, row.environment })
      assert.same({ { "request", mc.null, "received", { is_upgrade = false, is_push = false,
        installer_id = "0055e000001XyZwAAK", ip = "203.0.113.9" } } }, fx:events(ORG))
      assert.same({ { "onboarding.advance", ORG } }, queued())
      assert.is_true(held(req))
      local ttl = fx.r:call("TTL", "mc:callback:sig:" .. req.headers["x-signature"])
      assert(ttl > 590 and ttl <= 600, "ttl " .. tostring(ttl)) -- twice CALLBACK_TOLERANCE
    end)

    it("409: the org is already onboarding; nothing written, nothing queued, the signature released", function()
      fx:org(ORG, { state = "app_linked" })
      local req = install()
      local status, body = organizations.create(req)
      assert.equal(409, status)
      assert.same({ error = "org " .. ORG .. " is already onboarded", state = "app_linked", url = URL }, body)
      assert.same({ "app_linked", "Acme" }, { fx:row(ORG).state, fx:row(ORG).org_name })
      assert.same({}, fx:events(ORG))
      assert.same({}, queued())
      assert.is_false(held(req))
    end)

    it("202: an upgrade of an active org imports the mapping again (connect_authorized)", function()
      fx:org(ORG, { state = "active", attempts = 3 })
      local req = install({ is_upgrade = true, previous_version = "1.2" })
      local status, body = organizations.create(req)
      assert.equal(202, status)
      assert.same({ org_id = ORG, state = "connect_authorized", url = URL,
        note = "upgrade: the mapping is imported again" }, body)
      assert.same({ "connect_authorized", 0 }, { fx:row(ORG).state, fx:row(ORG).attempts })
      assert.same({ { "request", "active", "connect_authorized", { is_upgrade = true, is_push = false,
        previous_version = "1.2", ip = "203.0.113.9", package_upgrade = true } } }, fx:events(ORG))
      assert.same({ { "onboarding.advance", ORG } }, queued())
      assert.is_true(held(req))
    end)

    it("202: an upgrade while onboarding moves nothing (the mapping comes when it gets there)", function()
      fx:org(ORG, { state = "app_linked" })
      local status, body = organizations.create(install({ is_upgrade = true }))
      assert.equal(202, status)
      assert.same({ "app_linked", "upgrade: onboarding is still in progress, it imports the current mapping" },
        { body.state, body.note })
      assert.same({}, fx:events(ORG))
      assert.same({}, queued())
    end)

    it("202: a reinstall after offboarded starts over at received, "
      .. "dropping what the last onboarding learned", function()
      fx:org(ORG, { state = "offboarded", addon_id = "addon-1", connection_id = "conn-1", access_token = "sealed",
        failed_step = "app_linked", last_error = "old", attempts = 4, offboarded_at = "2024-01-02T03:04:05Z",
        progress = { failures = 2 } })
      local req = install({ org_name = "Hand Again", environment = "sandbox" })
      local status, body = organizations.create(req)
      assert.equal(202, status)
      assert.same({ org_id = ORG, state = "received", url = URL, note = "reinstalled" }, body)
      local row = fx:row(ORG)
      assert.same({ "received", "Hand Again", "sandbox", 0, {} },
        { row.state, row.org_name, row.environment, row.attempts, row.progress })
      for _, col in ipairs({ "addon_id", "connection_id", "access_token", "failed_step", "last_error",
                             "offboarded_at" }) do
        assert.equal(mc.null, row[col], col)
      end
      local ev = fx:events(ORG)
      assert.same({ "request", "offboarded", "received" }, { ev[1][1], ev[1][2], ev[1][3] })
      assert.equal(1, #ev)
      assert.same({ { "onboarding.advance", ORG } }, queued())
      assert.is_true(held(req))
    end)

    it("400: a body that is not JSON, or empty; the signature released, "
      .. "so the same request comes through again", function()
      local req = install("{not json")
      local status, body = organizations.create(req)
      assert.equal(400, status)
      assert.matches("^body is not valid JSON: ", body.error)
      assert.is_false(held(req))
      assert.equal(400, (organizations.create(req))) -- not "replayed": the key was given back
      local status2, body2 = organizations.create(install(""))
      assert.same({ 400, "body is not valid JSON: empty body" }, { status2, body2.error })
      assert.is_false(fx:row(ORG))
    end)

    it("400: each bad field named; nothing written", function()
      local req = install({ org_id = "00Dnope", admin_email = "not-an-address", org_name = mc.null, colour = "red" })
      local status, body = organizations.create(req)
      assert.equal(400, status)
      assert.equal("invalid callback", body.error)
      assert.same({ "admin_email", "colour", "org_id", "org_name" }, (function()
        local keys = {}
        for k in pairs(body.fields) do keys[#keys + 1] = k end
        table.sort(keys)
        return keys
      end)())
      assert.same({ "must be an e-mail address", "is not a known field", "is required" },
        { body.fields.admin_email, body.fields.colour, body.fields.org_name })
      assert.is_false(held(req))
      assert.same({}, queued())
    end)

    it("401: a bad signature, missing headers, a stale timestamp, a replay; none of them stores a key", function()
      local forged = install(nil, "not-the-secret")
      assert.same({ 401, { error = "bad signature" } }, { organizations.create(forged) })
      assert.is_false(held(forged))
      local bare = web_request.new{ method = "POST", path = "/organizations", body = install_body() }
      assert.same({ 401, { error = "missing X-Timestamp or X-Signature" } }, { organizations.create(bare) })
      local stale = web_request.signed(SECRET, install_body(), { timestamp = math.floor(host.time()) - 301 })
      local status, body = organizations.create(stale)
      assert.same({ 401, "stale X-Timestamp (more than 300 s from our clock)" }, { status, body.error })
      assert.is_false(held(stale))
      local req = install()
      assert.equal(202, (organizations.create(req)))
      assert.same({ 401, { error = "replayed request (this signature was already used)" } },
        { organizations.create(req) })
      assert.is_true(held(req)) -- the replay's refusal does not give the first request's key back
      assert.equal(1, #fx:events(ORG))
    end)

    it("503: the database fails; the signature released", function()
      db.use(fx:closed())
      local req = install()
      assert.same({ 503, { error = "the database is unavailable" } }, { organizations.create(req) })
      assert.is_false(held(req))
      assert.is_false(fx:row(ORG))
      assert.same({}, queued())
    end)
  end)

  describe("show", function()
    it("401 without the operator's token, or with another; no row read", function()
      fx:org(ORG, { state = "active" })
      local status, body, headers = organizations.show(operator(ORG, nil, false))
      assert.same({ 401, "operator credentials required (Authorization: Bearer <ADMIN_TOKEN>)" },
        { status, body.error })
      assert.same({ ["WWW-Authenticate"] = 'Bearer realm="multiconnect"' }, headers)
      assert.equal(401, (organizations.show(operator(ORG, nil, "spec-admin-token-9876543210"))))
    end)

    it("404 for an unknown org and for a malformed id", function()
      assert.same({ 404, { error = "no such org" } }, { organizations.show(operator(OTHER)) })
      assert.same({ 404, { error = "no such org" } }, { organizations.show(operator("not-an-id")) })
    end)

    it("200: the org's public fields, its next action and its events (no ids, no tokens)", function()
      assert.equal(202, (organizations.create(install())))
      assert(fx.conn:exec("UPDATE organizations SET access_token = 'sealed-secret' WHERE org_id = '" .. ORG .. "'"))
      local status, body = organizations.show(operator(ORG))
      assert.equal(200, status)
      assert.same({ ORG, "received", "provisioning the Heroku Connect add-on", 0 },
        { body.org_id, body.state, body.next_action, body.attempts })
      assert.is_nil(body.access_token)
      assert.equal(1, #body.events)
      local e = body.events[1]
      assert.same({ "request", "received", nil }, { e.kind, e.to_state, e.id })
      assert.equal("203.0.113.9", e.details.ip)
      assert.equal("string", type(body.next_attempt_at))
    end)

    it("503 when the database fails", function()
      db.use(fx:closed())
      assert.same({ 503, { error = "the database is unavailable" } }, { organizations.show(operator(ORG)) })
    end)
  end)

  describe("resume", function()
    it("409 when the org is not failed, 404 when there is none; nothing queued", function()
      fx:org(ORG, { state = "active" })
      assert.same({ 409, { error = "org is active, not failed: nothing to resume" } },
        { organizations.resume(operator(ORG, "/resume")) })
      assert.same({ 404, { error = "no such org" } }, { organizations.resume(operator(OTHER, "/resume")) })
      assert.same({}, fx:events(ORG))
      assert.same({}, queued())
    end)

    it("202: a failed org goes back to its failed step, with who asked", function()
      fx:org(ORG, { state = "failed", failed_step = "app_linked", last_error = "boom" })
      local status, body = organizations.resume(operator(ORG, "/resume"))
      assert.equal(202, status)
      assert.same({ "app_linked", "resumed at app_linked" }, { body.state, body.note })
      assert.same({ { "request", "failed", "app_linked", { resumed_by = "http", ip = "203.0.113.9" } } },
        fx:events(ORG))
      assert.same({ { "onboarding.advance", ORG } }, queued())
    end)

    it("401 without the operator's token, the org left failed", function()
      fx:org(ORG, { state = "failed", failed_step = "app_linked" })
      assert.equal(401, (organizations.resume(operator(ORG, "/resume", false))))
      assert.equal("failed", fx:row(ORG).state)
    end)
  end)

  describe("destroy", function()
    it("400 when the signed body names another org; nothing changed, the signature released", function()
      fx:org(ORG, { state = "active" })
      local req = uninstall(ORG, '{"org_id": "' .. OTHER .. '"}')
      local status, body = organizations.destroy(req)
      assert.same({ 400, 'the signed body must be {"org_id": "' .. ORG .. '"}' }, { status, body.error })
      assert.equal("active", fx:row(ORG).state)
      assert.is_false(held(req))
      assert.equal(400, (organizations.destroy(uninstall(ORG, "not json"))))
      assert.same({}, queued())
    end)

    it("404 for a malformed org id in the path, the signature released", function()
      local req = uninstall("nope")
      assert.same({ 404, { error = "no such org" } }, { organizations.destroy(req) })
      assert.is_false(held(req))
    end)

    it("202: offboarded, its event, the add-on's deletion queued, the signature kept", function()
      fx:org(ORG, { state = "mappings_imported" })
      local req = uninstall(ORG)
      local status, body, headers = organizations.destroy(req)
      assert.equal(202, status)
      assert.same({ ORG, "offboarded", URL }, { body.org_id, body.state, body.url })
      assert.matches("^offboarding: ", body.note)
      assert.same({ Location = URL }, headers)
      assert.same({ { "request", "mappings_imported", "offboarded", { uninstall = true, ip = "203.0.113.9" } } },
        fx:events(ORG))
      assert.same({ { "onboarding.offboard", ORG } }, queued())
      assert.is_true(held(req))
    end)

    it("202 offboarding: another transaction holds the row past the 3 s lock timeout; left to the job", function()
      fx:org(ORG, { state = "app_linked" })
      assert(fx.other:exec("BEGIN"))
      assert(fx.other:query("SELECT 1 FROM organizations WHERE org_id = $1 FOR UPDATE", ORG))
      local req = uninstall(ORG)
      local started = host.now()
      local status, body = organizations.destroy(req)
      local took = host.now() - started
      assert(fx.other:exec("ROLLBACK"))
      assert.equal(202, status)
      assert.same({ org_id = ORG, state = "offboarding", url = URL,
        note = "a step is running: the offboarding follows when it ends" }, body)
      assert(took >= 2.9 and took < 6, "waited " .. took .. " s")
      assert.equal("app_linked", fx:row(ORG).state)
      assert.same({ { "onboarding.offboard", ORG, "transition" } }, queued())
      assert.is_true(held(req))
    end)

    it("503 when the database fails, the signature released; 404 for no such org", function()
      db.use(fx:closed())
      local req = uninstall(ORG)
      assert.same({ 503, { error = "the database is unavailable" } }, { organizations.destroy(req) })
      assert.is_false(held(req))
      db.use(fx.conn)
      assert.same({ 404, { error = "no such org" } }, { organizations.destroy(uninstall(ORG)) })
    end)
  end)
end)
