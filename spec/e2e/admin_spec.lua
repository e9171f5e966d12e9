-- The operations dashboard (/admin) over raw HTTP against the real
-- `multiconnect web` and Postgres (database mc_admin, Redis db 22): sign-in
-- and its cookie, the rate limit, CSRF on every action, the pages with seeded
-- tenants and jobs, each action going through onboarding.operations or
-- mc.jobs, and the page shown while ADMIN_TOKEN is unset. (The browser
-- specs, spec/e2e/admin_browser_spec.lua, drive the same pages in Chromium.)
local json = require "mc.json"
local http = require "mc.http"
local jobs = require "mc.jobs"
local sfid = require "lib.sfid"
local web_app = require "support.web_app"
local stack = require "support.stack"

local function id(n) return (assert(sfid.to18(string.format("00D5e00000A%04d", n)))) end
local SECRET = stack.ADMIN_TOKEN
local FORM = { ["Content-Type"] = "application/x-www-form-urlencoded" }

describe("/admin", function()
  local app

  setup(function() app = web_app.start({ name = "mc_admin", redis = 22, env = { ADMIN_SIGNIN_LIMIT = "4" } }) end)
  teardown(function() app:stop() end)
  before_each(function() app:clear() end)

  local function post(path, fields, cookie)
    local headers = { ["Content-Type"] = FORM["Content-Type"], Cookie = cookie }
    return app:request("POST", path, { headers = headers, body = http.encode_query(fields) })
  end

  local function get(path, cookie) return app:request("GET", path, { headers = { Cookie = cookie } }) end

  -- signs in -> the session cookie ("mc_admin=...") and its CSRF token
  local function sign_in()
    local res = post("/admin/signin", { secret = SECRET })
    assert.equal(303, res.status, res.body)
    local cookie = res.headers["set-cookie"]:match("^(mc_admin=[^;]+)")
    local page = get("/admin/tenants", cookie)
    return cookie, page.body:match('name="csrf" value="([^"]+)"')
  end

  -- the flash cookie a redirect set, as the next request sends it back
  local function flash_of(res) return res.headers["set-cookie"]:match("^(mc_admin_flash=[^;]+)") end

  describe("signing in", function()
    it("sends a stranger to the sign-in page, which labels its one field and shows no secret", function()
      local res = get("/admin")
      assert.same({ 303, "/admin/signin" }, { res.status, res.headers["location"] })
      local page = get("/admin/signin")
      assert.equal(200, page.status)
      assert.matches('<label for="secret">', page.body, 1, true)
      assert.matches('id="secret" name="secret" type="password"', page.body, 1, true)
      assert.matches("default%-src 'none'", page.headers["content-security-policy"])
      assert.equal("DENY", page.headers["x-frame-options"])
      assert.is_nil(page.body:find(SECRET, 1, true))
    end)

    it("gives a signed, expiring, HttpOnly, SameSite=Strict cookie for the right secret", function()
      local res = post("/admin/signin", { secret = SECRET })
      assert.same({ 303, "/admin" }, { res.status, res.headers["location"] })
      local cookie = res.headers["set-cookie"]
      assert.matches("^mc_admin=v1%.%d+%.[%w_%-]+%.[%w_%-]+; "
        .. "Path=/admin; Max%-Age=28800; HttpOnly; SameSite=Strict$", cookie)
      assert.is_nil(cookie:find("Secure", 1, true)) -- APP_URL is http here
      assert.is_nil(cookie:find(SECRET, 1, true))
      local page = get("/admin", cookie:match("^([^;]+)"))
      assert.equal(200, page.status)
      assert.matches("<h1>Overview</h1>", page.body, 1, true)
      assert.is_nil(page.body:find(SECRET, 1, true))
    end)

    it("refuses a wrong secret (401, the form again) and an edited or expired cookie", function()
      local res = post("/admin/signin", { secret = SECRET .. "x" })
      assert.equal(401, res.status)
      assert.matches("That is not the operator secret.", res.body, 1, true)
      assert.is_nil(res.headers["set-cookie"])
      local cookie = sign_in()
      local expires = tonumber(cookie:match("v1%.(%d+)%."))
      local edited = cookie:gsub("v1%.%d+", "v1." .. (expires + 3600))
      assert.equal(303, get("/admin", edited).status)
      local stale = cookie:gsub("v1%.%d+", "v1." .. (expires - 86400))
      assert.equal(303, get("/admin", stale).status)
      assert.equal(401, get("/admin/overview.json", edited).status)
    end)

    it("429 with Retry-After past ADMIN_SIGNIN_LIMIT attempts from one address, even with the right secret", function()
      for _ = 1, 4 do assert.equal(401, post("/admin/signin", { secret = "wrong" }).status) end
      local res = post("/admin/signin", { secret = SECRET })
      assert.equal(429, res.status)
      local wait = tonumber(res.headers["retry-after"])
      assert.is_true(wait > 0 and wait <= 300, tostring(wait))
      assert.matches("Too many sign-in attempts", res.body, 1, true)
      app.redis:call("DEL", "mc:admin:signin:ip:127.0.0.1")
      assert.equal(303, post("/admin/signin", { secret = SECRET }).status)
    end)

    it("signs out with the CSRF token: the cookie is cleared", function()
      local cookie, csrf = sign_in()
      local res = post("/admin/signout", { csrf = csrf }, cookie)
      assert.same({ 303, "/admin/signin" }, { res.status, res.headers["location"] })
      assert.matches("^mc_admin=; Path=/admin; Max%-Age=0", res.headers["set-cookie"])
    end)
  end)

  describe("tenants", function()
    it("lists tenants with state, step age and last error; filters by state and searches", function()
      app:org(id(1), { org_name = "Acme <Corp>", state = "active" })
      app:org(id(2), { org_name = "Globex", state = "failed", failed_step = "app_linked",
        last_error = "heroku: 401 <unauthorized>", since = 7200 })
      app:org(id(3), { org_name = "Initech", state = "awaiting_app_oauth" })
      local cookie = sign_in()
      local page = get("/admin/tenants", cookie)
      assert.equal(200, page.status)
      for _, want in ipairs({ "Acme &lt;Corp&gt;", "Globex", "Initech", id(2),
                              "heroku: 401 &lt;unauthorized&gt;", "2h 0m" }) do
        assert.matches(want, page.body, 1, true)
      end
      assert.is_nil(page.body:find("<Corp>", 1, true)) -- escaped, never raw
      local failed = get("/admin/tenants?state=failed", cookie).body
      assert.matches("Globex", failed, 1, true)
      assert.is_nil(failed:find("Initech", 1, true))
      assert.matches('<option value="failed" selected>', failed, 1, true)
      assert.matches('<option value="degraded">', failed, 1, true)
      local search = get("/admin/tenants?q=init", cookie).body
      assert.matches("Initech", search, 1, true)
      assert.is_nil(search:find("Globex", 1, true))
      assert.equal(400, get("/admin/tenants?state=nope", cookie).status)
    end)

    it("shows a tenant: its facts, history, schema tables with row counts, and only the actions that apply", function()
      app:org(id(2), { org_name = "Globex", state = "failed", failed_step = "app_linked", last_error = "boom",
        schema_name = "salesforce_globex" })
      assert(app.pg:exec(([[INSERT INTO onboarding_events (org_id, from_state, to_state, kind, details)
        VALUES ('%s', 'app_linked', 'failed', 'failure', '{"error": "boom"}')]]):format(id(2))))
      assert(app.pg:exec("CREATE SCHEMA salesforce_globex"))
      assert(app.pg:exec("CREATE TABLE salesforce_globex.account (id serial)"))
      assert(app.pg:exec("INSERT INTO salesforce_globex.account DEFAULT VALUES;"
        .. " INSERT INTO salesforce_globex.account DEFAULT VALUES"))
      local cookie = sign_in()
      local page = get("/admin/tenants/" .. id(2), cookie)
      assert.equal(200, page.status)
      assert.matches('<span class="state state-failed" id="org-state">failed</span>', page.body, 1, true)
      assert.matches('<tr><td>account</td><td class="num">2</td></tr>', page.body, 1, true)
      assert.matches("{&quot;error&quot;:&quot;boom&quot;}", page.body, 1, true)
      assert.matches("no Heroku Connect connection yet", page.body, 1, true)
      assert.matches('action="/admin/tenants/' .. id(2) .. '/resume"', page.body, 1, true)
      assert.is_nil(page.body:find("/retry_step", 1, true)) -- a failed org is resumed, not retried
      assert.matches("/offboard", page.body, 1, true)
      assert.is_nil(page.body:find("/reimport_mapping", 1, true))
      -- a degraded org's mapping can be imported again (what its operator alert asks for)
      app:org(id(3), { state = "degraded" })
      local degraded = get("/admin/tenants/" .. id(3), cookie).body
      assert.matches('action="/admin/tenants/' .. id(3) .. '/reimport_mapping"', degraded, 1, true)
      assert.equal(404, get("/admin/tenants/00Dnope", cookie).status)
      assert.equal(404, get("/admin/tenants/" .. id(9), cookie).status)
    end)

    it("an action with the CSRF token goes through onboarding.operations and redirects back with a flash", function()
      app:org(id(2), { state = "failed", failed_step = "app_linked", last_error = "boom" })
      local cookie, csrf = sign_in()
      local res = post("/admin/tenants/" .. id(2) .. "/resume", { csrf = csrf }, cookie)
      assert.same({ 303, "/admin/tenants/" .. id(2) }, { res.status, res.headers["location"] })
      local rows, qerr = app.pg:query("SELECT state, last_error FROM organizations WHERE org_id = $1", id(2))
      assert(rows, qerr)
      local row = rows[1]
      assert.same({ "app_linked", mc.null }, { row.state, row.last_error })
      local ev = app.pg:query("SELECT kind, details FROM onboarding_events WHERE org_id = $1"
        .. " ORDER BY id DESC LIMIT 1", id(2))[1]
      assert.same({ "request", "dashboard", "127.0.0.1" }, { ev.kind, ev.details.by, ev.details.ip })
      assert.equal(1, app.redis:call("LLEN", "queue:default")) -- the step is queued
      local page = get("/admin/tenants/" .. id(2), cookie .. "; " .. flash_of(res))
      assert.matches('<p class="flash" role="status">Resume: done, the org is now app_linked.</p>', page.body, 1, true)
      assert.matches("^mc_admin_flash=; ", page.headers["set-cookie"]) -- shown once
      -- refused by the operation: said so, nothing moved
      local again = post("/admin/tenants/" .. id(2) .. "/resume", { csrf = csrf }, cookie)
      local said = get("/admin/tenants/" .. id(2), cookie .. "; " .. flash_of(again)).body
      assert.matches("Resume refused: org is app_linked, not failed: nothing to resume.", said, 1, true)
    end)

    it("403 for an action without the CSRF token, with another session's, or without a session; "
      .. "nothing moves", function()
      app:org(id(2), { state = "failed", failed_step = "app_linked" })
      local cookie = sign_in()
      local _, other_csrf = sign_in()
      for _, case in ipairs({ { {}, cookie }, { { csrf = other_csrf }, cookie }, { { csrf = "x" }, cookie },
          { { csrf = other_csrf }, nil } }) do
        local res = post("/admin/tenants/" .. id(2) .. "/resume", case[1], case[2])
        assert.equal(403, res.status)
      end
      local rows, qerr = app.pg:query("SELECT state FROM organizations WHERE org_id = $1", id(2))
      assert(rows, qerr)
      assert.equal("failed", rows[1].state)
      assert.equal(0, app.redis:call("LLEN", "queue:default"))
    end)

    it("offboard wants its confirmation box ticked", function()
      app:org(id(1), { state = "active" })
      local cookie, csrf = sign_in()
      local res = post("/admin/tenants/" .. id(1) .. "/offboard", { csrf = csrf }, cookie)
      assert.equal(303, res.status)
      assert.equal("active", app.pg:query("SELECT state FROM organizations WHERE org_id = $1", id(1))[1].state)
      post("/admin/tenants/" .. id(1) .. "/offboard", { csrf = csrf, confirm = "yes" }, cookie)
      assert.equal("offboarded", app.pg:query("SELECT state FROM organizations WHERE org_id = $1", id(1))[1].state)
    end)
  end)

  describe("jobs", function()
    local function bury(set, jid, err)
      local job = jobs.payload("onboarding.advance", { id(1) })
      job.jid, job.error_message, job.retry_count = jid, err, 3
      assert(app.redis:call("ZADD", set, jobs.now(), json.encode(job)))
    end

    it("shows queues, counters, and the retry and dead sets with each job's error", function()
      bury("dead", "deadbeef0001", "heroku: 500 <boom>")
      bury("retry", "feedface0001", "connect: timeout")
      assert(app.redis:call("SET", "stat:processed", "42"))
      local cookie = sign_in()
      local page = get("/admin/jobs", cookie)
      assert.equal(200, page.status)
      for _, want in ipairs({ "deadbeef0001", "heroku: 500 &lt;boom&gt;", "feedface0001", "connect: timeout",
          '<dd id="dead-count">1</dd>', "<dd>42</dd>" }) do
        assert.matches(want, page.body, 1, true)
      end
    end)

    it("retries one dead job onto its queue, deletes another, retries all retries", function()
      bury("dead", "deadbeef0001", "a"); bury("dead", "deadbeef0002", "b"); bury("retry", "feedface0001", "c")
      local cookie, csrf = sign_in()
      local res = post("/admin/jobs/dead/retry", { csrf = csrf, jid = "deadbeef0001" }, cookie)
      assert.same({ 303, "/admin/jobs" }, { res.status, res.headers["location"] })
      assert.equal(1, app.redis:call("ZCARD", "dead"))
      assert.matches('"jid":"deadbeef0001"', app.redis:call("LINDEX", "queue:default", 0))
      local said = get("/admin/jobs", cookie .. "; " .. flash_of(res)).body
      assert.matches("Job deadbeef0001 is queued again.", said, 1, true)
      post("/admin/jobs/dead/delete", { csrf = csrf, jid = "deadbeef0002" }, cookie)
      assert.equal(0, app.redis:call("ZCARD", "dead"))
      post("/admin/jobs/retry/retry", { csrf = csrf, all = "yes" }, cookie)
      assert.same({ 0, 2 }, { app.redis:call("ZCARD", "retry"), app.redis:call("LLEN", "queue:default") })
      assert.equal(400, post("/admin/jobs/retry/retry", { csrf = csrf }, cookie).status)
      assert.equal(404, post("/admin/jobs/queue/retry", { csrf = csrf, all = "yes" }, cookie).status)
      assert.equal(403, post("/admin/jobs/dead/delete", { all = "yes" }, cookie).status)
    end)
  end)

  describe("overview", function()
    it("counts tenants per state and serves the same figures as JSON for the live refresh", function()
      app:org(id(1), { state = "active" }); app:org(id(2), { state = "active" }); app:org(id(3), { state = "failed" })
      app:org(id(4), { state = "degraded" })
      assert(app.pg:exec(([[INSERT INTO onboarding_events (org_id, from_state, to_state, kind)
        VALUES ('%s', 'mappings_imported', 'active', 'transition')]]):format(id(1))))
      local cookie = sign_in()
      local page = get("/admin", cookie).body
      assert.matches('<strong data-live="states.active">2</strong>', page, 1, true)
      -- every state is listed, those after onboarding too
      assert.matches('<strong data-live="states.degraded">1</strong>', page, 1, true)
      assert.matches("Onboardings completed per hour, last 24 hours: 1", page, 1, true)
      local doc = get("/admin/overview.json", cookie).json
      assert.same({ 2, 1 }, { doc.states.active, doc.states.failed })
      assert.same({ 24, 1, 7 }, { #doc.active, doc.active[24], #doc.processed })
      assert.is_number(doc.jobs.processed)
      assert.equal(401, get("/admin/overview.json").status)
    end)
  end)

  it("serves only its own static files", function()
    local css = get("/admin/static/admin.css")
    assert.same({ 200, "text/css; charset=utf-8" }, { css.status, css.headers["content-type"] })
    assert.equal(404, get("/admin/static/..%2Fsession.lua").status)
    assert.equal(404, get("/admin/static/session.lua").status)
  end)
end)

describe("/admin without ADMIN_TOKEN", function()
  local app
  setup(function() app = web_app.start({ name = "mc_admin_off", redis = 22, env = { ADMIN_TOKEN = false } }) end)
  teardown(function() app:stop() end)

  it("is off, and every page says how to turn it on", function()
    for _, path in ipairs({ "/admin", "/admin/signin", "/admin/tenants", "/admin/jobs" }) do
      local res = app:request("GET", path)
      assert.equal(503, res.status, path)
      assert.matches("heroku config:set ADMIN_TOKEN=", res.body, 1, true)
    end
    local res = app:request("POST", "/admin/signin", { headers = FORM, body = "secret=anything" })
    assert.equal(503, res.status)
    assert.is_nil(res.headers["set-cookie"])
  end)
end)
