-- clients.connect against the project's sandbox Heroku Connect (sandbox/connect.lua:
-- hc-central discovery and the regional API, over add-ons the sandbox Heroku holds),
-- and a replay server for the answers the sandbox never gives (a 200 to a PATCH,
-- bodies of the wrong shape). Every call answers result | nil, err, retryable.
local connect = require "clients.connect"
local http = require "mc.http"
local env_vars = require "support.env_vars"
local sandbox_client = require "support.sandbox_client"
local replay = require "support.replay_server"
local server = require "support.server"

local APP, TOKEN = "mc-spec", "spec-heroku-token"
local ADDON = "mc-spec-hc-00d5e000000abcdeak"
local MAPPING = { version = 1, mappings = { { object_name = "Account",
  config = { access = "read_only", fields = { Id = {}, Name = {}, SystemModstamp = {} } } } } }

describe("clients.connect", function()
  local sb, region
  local config = env_vars.layered(function() return { HEROKU_CONNECT_URL = region, HEROKU_API_TOKEN = TOKEN } end)
  local function configure(vars) config:set(vars) end

  setup(function()
    sb = sandbox_client.start(22)
    region = sb.url .. "/connect"
  end)
  teardown(function() sb:stop() end)

  before_each(function()
    sb:reset({ heroku = { async = false }, connect = { postgres = false } })
    configure()
  end)
  after_each(function() config:restore() end)

  -- the org's Connect add-on on our app, as onboarding's first step leaves it
  local function provision()
    local res = assert(http.post(sb.url .. "/heroku/apps/" .. APP .. "/addons", {
      headers = { Accept = "application/vnd.heroku+json; version=3", Authorization = "Bearer " .. TOKEN },
      json = { plan = "herokuconnect:demo", name = ADDON } }))
    assert.equal(201, res.status, res.body)
  end

  -- a linked, listed connection -> its id
  local function connection()
    provision()
    assert.is_true(connect.link(APP))
    return assert(connect.find(APP, ADDON)).id
  end

  describe("link", function()
    it("is false while the app has no Connect add-on, true once it has one", function()
      assert.same({ false }, { connect.link(APP) })
      provision()
      assert.same({ true }, { connect.link(APP) })
    end)

    it("answers a refused token (401) as not retryable", function()
      sb:knobs({ connect = { token = "the-only-good-token" } })
      assert.same({ nil, "connect: HTTP 401 Invalid credentials provided.", false }, { connect.link(APP) })
    end)
  end)

  describe("find", function()
    it("is false until the add-on is linked, then the summary with its id and region_url", function()
      provision()
      assert.same({ false }, { connect.find(APP, ADDON) })
      assert.is_true(connect.link(APP))
      local c = assert(connect.find(APP, ADDON))
      assert.equal(ADDON, c.resource_name)
      assert.equal(region, c.region_url)
      assert.is_string(c.id)
      assert.same({ false }, { connect.find(APP, "another-addon") })
    end)

    it("takes a discovery URL with trailing slashes", function()
      configure({ HEROKU_CONNECT_URL = region .. "//" })
      provision()
      assert.is_true(connect.link(APP))
      assert.equal(ADDON, assert(connect.find(APP, ADDON)).resource_name)
    end)

    it("answers an injected 500 with an empty body as a bare retryable HTTP 500", function()
      sb:knobs({ connect = { fail_next = 1, fail_status = 500 } })
      assert.same({ nil, "connect: HTTP 500", true }, { connect.find(APP, ADDON) })
    end)

    it("answers a transport failure (nobody listening) as retryable", function()
      configure({ HEROKU_CONNECT_URL = "http://127.0.0.1:" .. server.free_port() })
      local ok, err, retry = connect.find(APP, ADDON)
      assert.is_nil(ok)
      assert.matches("^connect: ", err)
      assert.not_matches("HTTP", err)
      assert.is_true(retry)
    end)
  end)

  describe("the regional API", function()
    it("get: the connection, NEW at first, with its mappings when deep", function()
      local id = connection()
      local c = assert(connect.get(region, id))
      assert.equal(id, c.id)
      assert.equal("NEW", c.state)
      assert.is_nil(c.mappings)
      assert.is_table(assert(connect.get(region .. "/", id, true)).mappings)
    end)

    it("get: an unknown or foreign id is the API's 404, not retryable, and ids are escaped", function()
      connection()
      assert.same({ nil, "connect: HTTP 404 Not found.", false }, { connect.get(region, "no-such-id") })
      -- escaped, "../connections" cannot reach the (200) list of connections
      local c, err, retry = connect.get(region, "../connections")
      assert.is_nil(c)
      assert.matches("^connect: HTTP 404", err)
      assert.is_false(retry)
    end)

    it("configure: true on 202; a schema Connect refuses is a 400, not retryable", function()
      local id = connection()
      assert.same({ true }, { connect.configure(region, id, "salesforce00d5e000000abcdeak", "DATABASE_URL") })
      assert.same({ nil, "connect: HTTP 400 schema_name must be a valid Postgres schema name", false },
        { connect.configure(region, id, "Bad-Schema", "DATABASE_URL") })
      assert.same({ nil, "connect: HTTP 400 db_key must name a Heroku Postgres config var of the app", false },
        { connect.configure(region, id, "ok_schema", "NOT_A_DB") })
    end)

    it("authorize_url: the redirect the admin opens; a bad environment is a 400", function()
      local id = connection()
      local url = assert(connect.authorize_url(region, id,
        { environment = "production", next = "https://app.example/done" }))
      assert.matches("^" .. region:gsub("%p", "%%%0") .. "/sandbox/authorize/[%w_-]+$", url)
      assert.same({ nil, "connect: HTTP 400 environment must be production, sandbox or custom", false },
        { connect.authorize_url(region, id, { environment = "staging" }) })
    end)

    it("import: true once accepted; a document Connect refuses is a 400", function()
      local id = connection()
      assert.same({ true }, { connect.import(region, id, MAPPING) })
      assert.same({ nil, "connect: HTTP 400 Invalid request parameters", false },
        { connect.import(region, id, { version = 2, mappings = {} }) })
      assert.same({ nil, "connect: HTTP 404 Not found.", false }, { connect.import(region, "nope", MAPPING) })
    end)

    it("answers an injected 503 as retryable", function()
      local id = connection()
      sb:knobs({ connect = { fail_next = 1, fail_status = 503 } })
      assert.same({ nil, "connect: HTTP 503 The sandbox injected this failure.", true },
        { connect.configure(region, id, "s", "DATABASE_URL") })
    end)
  end)

  describe("against a replayed API", function()
    local srv = replay.fixture(_ENV, 23, function(s) configure({ HEROKU_CONNECT_URL = s.url }) end)

    it("sends the token and a JSON body, and a PATCH's schema and db_key", function()
      srv:answer(202, { id = "c1" })
      assert.is_true(connect.configure(srv.url, "c1", "s1", "DATABASE_URL"))
      local req = srv:requests()[1]
      assert.equal("PATCH", req.method)
      assert.equal("/api/v3/connections/c1", req.path)
      assert.equal("Bearer " .. TOKEN, req.headers.authorization)
      assert.equal("application/json", req.headers["content-type"])
      assert.same({ schema_name = "s1", db_key = "DATABASE_URL" }, require("mc.json").decode(req.body))
    end)

    it("configure: a 200 (Connect's 'not yet') is retryable", function()
      srv:answer(200, { id = "c1" })
      assert.same({ nil, "connect: PATCH answered 200, not 202", true },
        { connect.configure(srv.url, "c1", "s1", "DATABASE_URL") })
    end)

    it("find: a list without results, or results without id and region_url, is not taken", function()
      srv:answer(200, { count = 0 }):answer(200, "[]"):answer(200, "not json")
        :answer(200, { results = { { resource_name = ADDON, id = "c1" },
                                   { resource_name = ADDON, region_url = "u" } } })
      assert.same({ nil, "connect: unexpected connections list", true }, { connect.find(APP, ADDON) })
      assert.same({ nil, "connect: unexpected connections list", true }, { connect.find(APP, ADDON) })
      assert.same({ nil, "connect: unexpected connections list", true }, { connect.find(APP, ADDON) })
      assert.same({ false }, { connect.find(APP, ADDON) })
      assert.same({ app = APP, resource_name = ADDON }, srv:requests()[1].query)
    end)

    it("get and authorize_url: a body of the wrong shape is retryable", function()
      srv:answer(200, "null"):answer(200, "<html>"):answer(201, { url = "https://x" }):answer(201, { redirect = 42 })
      assert.same({ nil, "connect: unexpected connection body", true }, { connect.get(srv.url, "c1") })
      assert.same({ nil, "connect: unexpected connection body", true }, { connect.get(srv.url, "c1") })
      local no_redirect = { nil, "connect: authorize_url gave no redirect", true }
      assert.same(no_redirect, { connect.authorize_url(srv.url, "c1", {}) })
      assert.same(no_redirect, { connect.authorize_url(srv.url, "c1", {}) })
    end)

    it("a 429 or 503 with Retry-After passes the wait up as the retryable value; without one, true", function()
      srv:answer(429, { message = "Too many requests" }, { ["Retry-After"] = "30" })
      assert.same({ n = 3, nil, "connect: HTTP 429 Too many requests", 30 },
        table.pack(connect.import(srv.url, "c1", MAPPING)))
      srv:answer(503, { message = "Down for maintenance" }, { ["Retry-After"] = "86400" })
      assert.same({ n = 3, nil, "connect: HTTP 503 Down for maintenance", 3600 }, -- capped at an hour
        table.pack(connect.get(srv.url, "c1", true)))
      srv:answer(429, { message = "Too many requests" }, { ["Retry-After"] = "Wed, 21 Oct 2026 07:28:00 GMT" })
      assert.same({ n = 3, nil, "connect: HTTP 429 Too many requests", true },
        table.pack(connect.import(srv.url, "c1", MAPPING)))
      srv:answer(404, { message = "gone" })
      assert.same({ n = 1, true }, table.pack(connect.pause(srv.url, "c1"))) -- nothing left to pause
    end)
  end)
end)
