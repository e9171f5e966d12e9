-- The sandbox's Heroku Platform API stand-in, driven through mc.http as the
-- onboarding will drive the real one (docs/external-apis.md §2).
local sandbox = require "support.sandbox"
local http = require "mc.http"
local host = require "mc.host"
local proc = require "support.process"

local ACCEPT = "application/vnd.heroku+json; version=3"

describe("sandbox: Heroku Platform API", function()
  local sb, base, control

  local function api(method, path, opts)
    opts = opts or {}
    local headers = { Accept = ACCEPT, Authorization = "Bearer spec-token" }
    for k, v in pairs(opts.headers or {}) do headers[k] = v or nil end
    return assert(http.request({ method = method, url = base .. path, headers = headers, json = opts.json }))
  end

  local function knobs(doc)
    assert.equal(200, assert(http.post(control .. "/config", { json = { heroku = doc } })).status)
  end

  setup(function()
    local url
    sb, url = sandbox.start(11)
    base = url .. "/heroku"
    control = url .. "/__sandbox"
  end)
  teardown(function() sb:stop() end)
  before_each(function()
    assert.equal(204, assert(http.post(control .. "/reset")).status)
    knobs({ provision_delay = 0.3 })
  end)

  it("provisions an add-on asynchronously: 202 provisioning, then provisioned", function()
    local res = api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo",
      attachment = { name = "HEROKUCONNECT" }, config = { region = "us" } } })
    assert.equal(202, res.status)
    local addon = res:json()
    assert.equal("provisioning", addon.state)
    assert.equal("herokuconnect", addon.addon_service.name)
    assert.equal("herokuconnect:demo", addon.plan.name)
    assert.equal("my-app", addon.app.name)
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", addon.id)
    assert.matches('"actions":%[%]', res.body)
    assert.truthy(res.headers["request-id"])
    local again = proc.wait_for(function()
      local got = api("GET", "/apps/my-app/addons/" .. addon.id)
      return got:json().state == "provisioned" and got
    end, 5, "the add-on to be provisioned")
    assert.equal(200, again.status)
    assert.matches('"config_vars":%[%]', again.body)
    -- by name too
    assert.equal(addon.id, api("GET", "/apps/my-app/addons/" .. addon.name):json().id)
  end)

  it("provisions synchronously with 201 when the async knob is off", function()
    knobs({ async = false })
    local res = api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo", name = "hc-acme" } })
    assert.equal(201, res.status)
    assert.equal("provisioned", res:json().state)
    assert.equal("hc-acme", res:json().name)
  end)

  it("is not idempotent: a second POST makes a second add-on; a taken name is refused", function()
    api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo" } })
    api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo", name = "hc-one" } })
    local list = api("GET", "/apps/my-app/addons")
    assert.equal(200, list.status)
    assert.equal(2, #list:json())
    local dup = api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo", name = "hc-one" } })
    assert.equal(422, dup.status)
    assert.equal("invalid_params", dup:json().id)
    assert.same({}, api("GET", "/apps/other-app/addons"):json())
    assert.matches("^%[%]$", api("GET", "/apps/other-app/addons").body)
  end)

  it("keeps add-on names globally unique: 422 from any app, served and deleted by name, freed on delete", function()
    local name = "hc-00d5e00000s0001eab"
    local first = api("POST", "/apps/app-a/addons", { json = { plan = "herokuconnect:demo", name = name,
      attachment = { name = "HEROKUCONNECT_ORG1" } } })
    assert.equal(202, first.status)
    for _, app in ipairs({ "app-a", "app-b" }) do
      local dup = api("POST", "/apps/" .. app .. "/addons", { json = { plan = "herokuconnect:demo", name = name } })
      assert.equal(422, dup.status)
      assert.same({ id = "invalid_params", message = "Name is already taken",
        url = "https://devcenter.heroku.com/articles/platform-api-reference" }, dup:json())
    end
    assert.equal(first:json().id, api("GET", "/apps/app-a/addons/" .. name):json().id)
    assert.equal(404, api("GET", "/apps/app-b/addons/" .. name).status) -- another app's add-on
    assert.equal(404, api("DELETE", "/apps/app-b/addons/" .. name).status)
    assert.same({}, api("GET", "/apps/app-b/addons"):json())
    local gone = api("DELETE", "/apps/app-a/addons/" .. name)
    assert.equal(200, gone.status)
    assert.equal("deprovisioned", gone:json().state)
    assert.equal(404, api("GET", "/apps/app-a/addons/" .. name).status)
    assert.equal(202, api("POST", "/apps/app-b/addons", { json = { plan = "herokuconnect:demo", name = name } }).status)
    assert.equal("app-b", api("GET", "/apps/app-b/addons/" .. name):json().app.name)
  end)

  it("lists the live add-ons compactly for tests: name, app, attachment, state", function()
    for i = 1, 3 do
      api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo", name = "hc-org" .. i,
        attachment = { name = "HC_ORG" .. i } } })
    end
    api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo", name = "hc-org1-again",
      attachment = { name = "HC_ORG1" } } })
    api("POST", "/apps/other-app/addons", { json = { plan = "heroku-postgresql:essential-0" } })
    local doomed = api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo", name = "hc-gone" } })
    api("DELETE", "/apps/my-app/addons/" .. doomed:json().id)
    local all = assert(http.get(control .. "/heroku/addons")):json()
    assert.equal(5, #all)
    local mine = assert(http.get(control .. "/heroku/addons", { query = { app = "my-app" } })):json()
    assert.equal(4, #mine)
    local per_attachment = {}
    for _, a in ipairs(mine) do
      assert.equal("my-app", a.app)
      assert.equal("herokuconnect:demo", a.plan)
      assert.equal("provisioning", a.state)
      per_attachment[a.attachment] = (per_attachment[a.attachment] or 0) + 1
    end
    assert.same({ HC_ORG1 = 2, HC_ORG2 = 1, HC_ORG3 = 1 }, per_attachment)
    assert.same({ "hc-org1", "hc-org1-again", "hc-org2", "hc-org3" },
      { mine[1].name, mine[2].name, mine[3].name, mine[4].name })
    for _, a in ipairs(all) do
      if a.app == "other-app" then assert.equal("HEROKU_POSTGRESQL", a.attachment) end -- the service's name by default
    end
    proc.wait_for(function() return assert(http.get(control .. "/heroku/addons")):json()[1].state == "provisioned" end,
      5, "the first add-on to be provisioned")
    assert.matches("^%[%]$", assert(http.get(control .. "/heroku/addons", { query = { app = "none" } })).body)
  end)

  it("deprovisions, then answers 404 in Heroku's error shape", function()
    local addon = api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo" } }):json()
    local gone = api("DELETE", "/apps/my-app/addons/" .. addon.id)
    assert.equal(200, gone.status)
    assert.equal("deprovisioned", gone:json().state)
    local res = api("GET", "/apps/my-app/addons/" .. addon.id)
    assert.equal(404, res.status)
    assert.equal("not_found", res:json().id)
    assert.is_string(res:json().message)
    assert.is_string(res:json().url)
    assert.equal(404, api("DELETE", "/apps/my-app/addons/" .. addon.id).status)
  end)

  it("validates the body: 422 invalid_params", function()
    for _, body in ipairs({ {}, { plan = "" }, { plan = "x:y", name = "9bad" }, { plan = "x:y", config = { k = 1 } },
        { plan = "x:y", attachment = "HC" }, { plan = "x:y", attachment = { name = "HC-1" } } }) do
      local res = api("POST", "/apps/my-app/addons", { json = body })
      assert.equal(422, res.status)
      assert.equal("invalid_params", res:json().id)
    end
  end)

  it("refuses a missing or wrong Accept with 406, and a missing token with 401", function()
    local res = api("GET", "/apps/my-app/addons", { headers = { Accept = "application/json" } })
    assert.equal(406, res.status)
    assert.equal("not_acceptable", res:json().id)
    res = api("GET", "/apps/my-app/addons", { headers = { Authorization = false } })
    assert.equal(401, res.status)
    assert.equal("unauthorized", res:json().id)
    knobs({ token = "the-right-one" })
    assert.equal(401, api("GET", "/apps/my-app/addons").status)
  end)

  it("counts the rate limit down and answers 429 rate_limit when it is spent", function()
    knobs({ rate_limit = 3, rate_refill = 0 })
    assert.equal("2", api("GET", "/apps/my-app/addons").headers["ratelimit-remaining"])
    assert.equal(2, api("GET", "/account/rate-limits"):json().remaining) -- not counted
    api("GET", "/apps/my-app/addons")
    api("GET", "/apps/my-app/addons")
    local res = api("GET", "/apps/my-app/addons")
    assert.equal(429, res.status)
    assert.equal("rate_limit", res:json().id)
    assert.equal("0", res.headers["ratelimit-remaining"])
  end)

  it("refills the spent bucket at rate_refill a minute, never past rate_limit", function()
    knobs({ rate_limit = 1, rate_refill = 0 })
    assert.equal(200, api("GET", "/apps/my-app/addons").status)
    assert.equal(429, api("GET", "/apps/my-app/addons").status)
    knobs({ rate_refill = 60000 }) -- 1,000 a second
    host.sleep(0.05) -- 50 tokens' worth
    assert.equal(1, api("GET", "/account/rate-limits"):json().remaining) -- a bucket of 1: full, not past
    local res = api("GET", "/apps/my-app/addons")
    assert.equal(200, res.status)
    assert.equal("0", res.headers["ratelimit-remaining"])
  end)

  it("injects failures and latency by knob", function()
    knobs({ fail_next = 2, fail_status = 503 })
    assert.equal(503, api("GET", "/apps/my-app/addons").status)
    assert.equal("service_unavailable", api("GET", "/apps/my-app/addons"):json().id)
    assert.equal(200, api("GET", "/apps/my-app/addons").status)
    knobs({ latency = 1.5 })
    local res, err = http.request({ url = base .. "/apps/my-app/addons", timeout = 0.5,
      headers = { Accept = ACCEPT, Authorization = "Bearer spec-token" } })
    assert.is_nil(res)
    assert.equal("timeout", err)
  end)

  it("shows its state and knobs", function()
    api("POST", "/apps/my-app/addons", { json = { plan = "herokuconnect:demo" } })
    local state = assert(http.get(control .. "/state")):json()
    local addons = 0
    for key in pairs(state) do if key:find("^sandbox:heroku:addon:") then addons = addons + 1 end end
    assert.equal(1, addons)
    assert.equal(0.3, assert(http.get(control .. "/config")):json().heroku.provision_delay)
  end)

  describe("SANDBOX_CONFIG", function()
    it("sets knobs at start", function()
      local other, url = sandbox.start(11, { SANDBOX_CONFIG = '{"heroku": {"async": false, "rate_limit": 7}}' })
      local res = http.request({ method = "POST", url = url .. "/heroku/apps/a-app/addons",
        headers = { Accept = ACCEPT, Authorization = "Bearer other" }, json = { plan = "herokuconnect:demo" } })
      other:stop()
      assert.equal(201, res.status)
      assert.equal("6", res.headers["ratelimit-remaining"])
    end)

    it("is applied once per value: a restarted sandbox keeps knobs changed since; a new value applies", function()
      local config = '{"heroku": {"async": false, "rate_limit": 9}}'
      local first, url = sandbox.start(11, { SANDBOX_CONFIG = config })
      local set = assert(http.post(url .. "/__sandbox/config", { json = { heroku = { rate_limit = 3 } } }))
      assert.equal(200, set.status)
      first:stop()
      local again, url2 = sandbox.start(11, { SANDBOX_CONFIG = config })
      local kept = assert(http.get(url2 .. "/__sandbox/config")):json().heroku.rate_limit
      again:stop()
      assert.equal(3, kept) -- the endpoint's change survived the restart
      local changed, url3 = sandbox.start(11, { SANDBOX_CONFIG = '{"heroku": {"rate_limit": 5}}' })
      local now = assert(http.get(url3 .. "/__sandbox/config")):json().heroku.rate_limit
      changed:stop()
      assert.equal(5, now)
    end)

    it("refuses a malformed one clearly", function()
      local r = proc.mc({ "sandbox" }, { env = { MC_ROOT = host.root, SANDBOX_CONFIG = "{nope" } })
      assert.equal(1, r.code)
      assert.matches("SANDBOX_CONFIG: not a JSON object", r.stderr, 1, true)
    end)
  end)
end)
