-- clients.heroku against the project's sandbox Heroku Platform API (sandbox/heroku.lua)
-- for the contract, and a replay server for a 429 in the shape the sandbox does not
-- send (Retry-After). Every call answers result | nil, err, retryable (the seconds
-- of a Retry-After when the service sent one).
local heroku = require "clients.heroku"
local http = require "mc.http"
local env_vars = require "support.env_vars"
local sandbox_client = require "support.sandbox_client"
local replay = require "support.replay_server"
local server = require "support.server"

local APP, TOKEN = "mc-spec", "spec-heroku-token"
local NAME = "mc-spec-hc-00d5e000000abcdeak"
local ACCEPT = "application/vnd.heroku+json; version=3"

describe("clients.heroku", function()
  local sb
  local config = env_vars.layered(function()
    return { HEROKU_API_URL = sb.url .. "/heroku", HEROKU_API_TOKEN = TOKEN, HEROKU_APP_NAME = APP,
      HEROKU_CONNECT_PLAN = false }
  end)
  local function configure(vars) config:set(vars) end

  setup(function() sb = sandbox_client.start(20) end)
  teardown(function() sb:stop() end)

  before_each(function()
    sb:reset({ heroku = { async = false, rate_limit = 100 } })
    configure()
  end)
  after_each(function() config:restore() end)

  local function remaining()
    return sb:get("/heroku/account/rate-limits", { Accept = ACCEPT, Authorization = "Bearer " .. TOKEN }).remaining
  end

  -- an add-on made by someone else's call, as the sandbox stores it
  local function addon_on(app, name)
    local res = assert(http.post(sb.url .. "/heroku/apps/" .. app .. "/addons", {
      headers = { Accept = ACCEPT, Authorization = "Bearer other-token" },
      json = { plan = "herokuconnect:demo", name = name } }))
    assert.equal(201, res.status, res.body)
    return res:json()
  end

  it("reads HEROKU_APP_NAME, and raises when it is not set", function()
    assert.equal(APP, heroku.app())
    configure({ HEROKU_APP_NAME = false })
    assert.has_error(function() heroku.app() end, "HEROKU_APP_NAME is required but not set")
  end)

  it("get_addon: false for an add-on that is not there, the add-on by name or id when it is", function()
    assert.is_false(heroku.get_addon(NAME))
    local made = addon_on(APP, NAME)
    local by_name = assert(heroku.get_addon(NAME))
    assert.equal(made.id, by_name.id)
    assert.equal("provisioned", by_name.state)
    assert.equal(made.id, assert(heroku.get_addon(made.id)).id)
    -- an add-on of another app is not ours
    addon_on("other-app", "someone-elses")
    assert.is_false(heroku.get_addon("someone-elses"))
  end)

  it("create_addon: provisions the default plan with the name and attachment given", function()
    local addon = assert(heroku.create_addon(NAME, "HC_00D5E000000ABCDEAK"))
    assert.equal(NAME, addon.name)
    assert.equal("herokuconnect:demo", addon.plan.name)
    assert.equal(APP, addon.app.name)
    local listed = sb:get("/__sandbox/heroku/addons?app=" .. APP)
    assert.equal(1, #listed)
    assert.equal("HC_00D5E000000ABCDEAK", listed[1].attachment)
  end)

  it("create_addon: takes HEROKU_CONNECT_PLAN, and a base URL with trailing slashes", function()
    configure({ HEROKU_CONNECT_PLAN = "herokuconnect:enterprise", HEROKU_API_URL = sb.url .. "/heroku//" })
    assert.equal("herokuconnect:enterprise", assert(heroku.create_addon(NAME, "HC")).plan.name)
  end)

  it("create_addon: a second call finds the first add-on with one GET, and makes no second one", function()
    local first = assert(heroku.create_addon(NAME, "HC"))
    local before = remaining()
    local again = assert(heroku.create_addon(NAME, "HC"))
    assert.equal(first.id, again.id)
    assert.equal(before - 1, remaining()) -- the lookup only, no POST
    assert.equal(1, #sb:get("/__sandbox/heroku/addons"))
  end)

  it("create_addon: a name another app holds is a permanent failure, named", function()
    addon_on("other-app", NAME)
    assert.same({ nil, "heroku: add-on name " .. NAME .. " is taken by another app", false },
      { heroku.create_addon(NAME, "HC") })
  end)

  it("create_addon: any other 422 is passed on in Heroku's words, not retryable", function()
    assert.same({ nil, "heroku: HTTP 422 invalid_params: name is invalid", false },
      { heroku.create_addon("9-starts-with-a-digit", "HC") })
  end)

  it("answers a refused token (401) as not retryable, on every call, and stops create at the lookup", function()
    sb:knobs({ heroku = { token = "the-only-good-token" } })
    local refused = { nil, "heroku: HTTP 401 unauthorized: Invalid credentials provided.", false }
    assert.same(refused, { heroku.get_addon(NAME) })
    assert.same(refused, { heroku.create_addon(NAME, "HC") })
    assert.same(refused, { heroku.delete_addon(NAME) })
    assert.same({}, sb:get("/__sandbox/heroku/addons"))
  end)

  it("answers the spent rate limit (429) as retryable", function()
    sb:knobs({ heroku = { rate_limit = 0 } })
    assert.same({ nil, "heroku: HTTP 429 rate_limit: Your account reached the API rate limit", true },
      { heroku.get_addon(NAME) })
    assert.same({ nil, "heroku: HTTP 429 rate_limit: Your account reached the API rate limit", true },
      { heroku.create_addon(NAME, "HC") })
  end)

  it("answers a 5xx as retryable, and the next call goes through", function()
    sb:knobs({ heroku = { fail_next = 1, fail_status = 503 } })
    assert.same({ nil, "heroku: HTTP 503 service_unavailable: The sandbox injected this failure.", true },
      { heroku.create_addon(NAME, "HC") })
    sb:knobs({ heroku = { fail_next = 1, fail_status = 500 } })
    assert.same({ nil, "heroku: HTTP 500 internal_server_error: The sandbox injected this failure.", true },
      { heroku.delete_addon(NAME) })
    assert.equal(NAME, assert(heroku.create_addon(NAME, "HC")).name)
  end)

  it("delete_addon: true for a live add-on (then gone, its name free) and for one never there", function()
    assert(heroku.create_addon(NAME, "HC"))
    assert.same({ true }, { heroku.delete_addon(NAME) })
    assert.is_false(heroku.get_addon(NAME))
    assert.same({ true }, { heroku.delete_addon(NAME) })
    assert.same({ true }, { heroku.delete_addon("never-there") })
  end)

  it("answers a transport failure (nobody listening) as retryable, naming the service", function()
    configure({ HEROKU_API_URL = "http://127.0.0.1:" .. server.free_port() })
    local addon, err, retry = heroku.get_addon(NAME)
    assert.is_nil(addon)
    assert.matches("^heroku: ", err)
    assert.not_matches("HTTP", err)
    assert.is_true(retry)
  end)

  describe("against a replayed API", function()
    local srv = replay.fixture(_ENV, 21, function(s) configure({ HEROKU_API_URL = s.url }) end)

    it("sends the version-3 Accept, the bearer token, and escapes the app and add-on names", function()
      configure({ HEROKU_API_URL = srv.url, HEROKU_APP_NAME = "my app" })
      srv:answer(404, { id = "not_found", message = "Couldn't find that add-on." })
      assert.is_false(heroku.get_addon("a/b"))
      local req = srv:requests()[1]
      assert.equal("GET", req.method)
      assert.equal("/apps/my app/addons/a/b", req.path) -- decoded by the server: sent as my%20app/.../a%2Fb
      assert.equal(ACCEPT, req.headers.accept)
      assert.equal("Bearer " .. TOKEN, req.headers.authorization)
    end)

    it("a 429 with Retry-After is retryable after the wait it names (three results)", function()
      srv:answer(429, { id = "rate_limit", message = "Your account reached the API rate limit" },
        { ["Retry-After"] = "7", ["RateLimit-Remaining"] = "0" })
      local out = table.pack(heroku.get_addon(NAME))
      assert.same({ n = 3, nil, "heroku: HTTP 429 rate_limit: Your account reached the API rate limit", 7 }, out)
    end)

    it("create_addon: a lost answer's add-on that shows up on the retried POST's 422 is ours", function()
      srv:answer(404, { id = "not_found", message = "Couldn't find that add-on." })
        :answer(422, { id = "invalid_params", message = "Name is already taken" })
        :answer(200, { id = "a1b2", name = NAME, state = "provisioning" })
      assert.same({ id = "a1b2", name = NAME, state = "provisioning" }, heroku.create_addon(NAME, "HC"))
      local reqs = srv:requests()
      assert.same({ "GET", "POST", "GET" }, { reqs[1].method, reqs[2].method, reqs[3].method })
      assert.same({ plan = "herokuconnect:demo", name = NAME, attachment = { name = "HC" } },
        require("mc.json").decode(reqs[2].body))
    end)

    it("create_addon: a failed lookup after a 422 is passed on with its own retryable", function()
      srv:answer(404, { id = "not_found", message = "Couldn't find that add-on." })
        :answer(422, { id = "invalid_params", message = "Name is already taken" })
        :answer(503, { id = "service_unavailable", message = "try later" })
      assert.same({ nil, "heroku: HTTP 503 service_unavailable: try later", true }, { heroku.create_addon(NAME, "HC") })
    end)
  end)
end)
