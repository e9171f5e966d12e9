-- The project's web process (scripts/app.lua as it is) fed hostile callbacks over
-- real HTTP, and kept serving through a Postgres outage: each answer is a status
-- that tells the package what to do (4xx: do not send it again; 5xx: retry), fast,
-- with a JSON body, and no traceback in the log.
local http = require "mc.http"
local json = require "mc.json"
local host = require "mc.host"
local redis = require "mc.redis"
local daemon = require "support.daemon"
local server = require "support.server"
local proc = require "support.process"
local pg_db = require "support.pg_db"
local stack = require "support.stack"

local DB = "mc_spec_hostile"
local REDIS_DB = 21
local ORG = "00D5e000000HoStEAK"

local function env_for(db_url, port)
  return {
    DATABASE_URL = db_url, REDIS_URL = (os.getenv("REDIS_URL"):gsub("/%d*$", "")) .. "/" .. REDIS_DB,
    PORT = tostring(port), WEB_BIND = "127.0.0.1", WEB_THREADS = "2", MC_RELOAD = "false",
    APP_URL = "http://127.0.0.1:" .. port, CALLBACK_SECRET = stack.CALLBACK_SECRET, ADMIN_TOKEN = stack.ADMIN_TOKEN,
    ENCRYPTION_KEYS = stack.KEYS, SALESFORCE_CLIENT_ID = "spec-client", SALESFORCE_CLIENT_SECRET = "spec-secret",
  }
end

-- start(db_url) -> the web process and its base URL, once it listens
local function start(db_url)
  local port = server.free_port()
  local web = daemon.start({ command = "web", root = host.root, env = env_for(db_url, port) })
  if not web:wait_log("msg=listening", 15) then
    local log = web:log(); web:stop(); error("web did not start:\n" .. log)
  end
  return web, "http://127.0.0.1:" .. port
end

-- start_fresh(db) -> web, url, db_url: the web process on a new migrated database
-- and an emptied Redis
local function start_fresh(db)
  local db_url = pg_db.create(db)
  local m = proc.mc({ "migrate" }, { env = env_for(db_url, server.free_port()) })
  assert(m.code == 0, "migrate failed: " .. tostring(m.stdout) .. tostring(m.stderr))
  local r = assert(redis.connect(env_for(db_url, 1).REDIS_URL))
  assert(r:call("FLUSHDB"))
  r:close()
  local web, url = start(db_url)
  return web, url, db_url
end

describe("hostile callbacks", function()
  local web, url
  setup(function() web, url = start_fresh(DB) end)
  teardown(function()
    web:stop()
    pg_db.drop(DB)
  end)

  -- post(doc | raw body) -> status, decoded body, seconds taken
  local function post(doc)
    local body = type(doc) == "string" and doc or json.encode(doc)
    local t = host.now()
    local res = assert(http.post(url .. "/organizations", { body = body, headers = stack.sign(body), timeout = 30 }))
    return res.status, json.decode(res.body), host.now() - t
  end

  local function install(fields)
    local doc = { org_id = ORG, org_name = "Hostile Co", admin_email = "admin@hostile.example" }
    for k, v in pairs(fields) do doc[k] = v end
    return doc
  end

  it("answers a field of 40,000 spaces between two letters at once (trimming is linear)", function()
    local status, body, took = post(install({ org_name = "a" .. string.rep(" ", 40000) .. "b" }))
    assert.equal(400, status)
    assert.equal("must be at most 255 characters", body.fields.org_name)
    assert.truthy(took < 2, "took " .. took .. " s")
    -- padding is trimmed, however long
    status, body, took = post(install({ org_id = "00D5e000000PaDdEAK", org_name = string.rep(" ", 40000) .. "Padded Co"
      .. string.rep("\t", 40000) }))
    assert.equal(202, status, json.encode(body))
    assert.truthy(took < 2, "took " .. took .. " s")
  end)

  it("answers 400 to JSON nested 10,000 deep and to duplicate keys, at once", function()
    local status, body, took = post(string.rep("[", 10000) .. string.rep("]", 10000))
    assert.equal(400, status)
    assert.matches("^body is not valid JSON: .*nest", body.error)
    assert.truthy(took < 2, "took " .. took .. " s")
    status, body = post('{"org_id": "' .. ORG .. '", "org_name": "A", "org_name": "B", "admin_email": "a@b.example"}')
    assert.equal(400, status)
    assert.equal("body is not valid JSON: duplicate key in an object", body.error)
  end)

  it("answers 400 naming the field to invalid UTF-8, and keeps the org out", function()
    for _, bad in ipairs({ "Acme \xff\xfe", "Acme \xc3", "Acme \xed\xa0\x80" }) do
      local status, body = post(install({ org_name = bad }))
      assert.equal(400, status)
      assert.equal("must be valid UTF-8", body.fields.org_name)
    end
    local status, body = post('{"org_id": "' .. ORG .. '", "org_name": "x", "admin_email": "a@b.example", "\xff": 1}')
    assert.equal(400, status)
    assert.equal("field names must be valid UTF-8", body.fields.body)
    -- a name of 255 characters in more bytes (Postgres counts characters)
    status, body = post(install({ org_id = "00D5e000000UtFeEAK", org_name = string.rep("é", 255) }))
    assert.equal(202, status, json.encode(body))
    local log = web:log()
    assert.is_nil(log:find("stack traceback", 1, true), log)
  end)

  it("answers a normal client at once after each of them", function()
    post(string.rep("{\"a\":", 10000) .. "1" .. string.rep("}", 10000))
    post(install({ org_name = "Acme \xff" }))
    post(install({ org_name = "a" .. string.rep(" ", 40000) .. "b" }))
    local t = host.now()
    local res = assert(http.get(url .. "/health", { timeout = 5 }))
    assert.equal(200, res.status, res.body)
    assert.truthy(host.now() - t < 1, "/health took " .. (host.now() - t) .. " s")
  end)
end)

-- The signature over real HTTP (lib.signature's checks one by one:
-- spec/unit/lib_signature_spec.lua): every forgery is a 401 naming what is wrong, and
-- none of them creates the org or uses up the signature of the genuine request.
describe("forged callbacks", function()
  local web, url, db_url
  local ORG_F = "00D5e000000FoRgEAK"
  setup(function() web, url, db_url = start_fresh(DB .. "_sig") end)
  teardown(function()
    web:stop()
    pg_db.drop(DB .. "_sig")
  end)

  local BODY = json.encode({ org_id = ORG_F, org_name = "Forged Co", admin_email = "admin@forged.example" })

  -- send(body, headers) -> status, the error of the answer
  local function send(body, headers)
    local res = assert(http.post(url .. "/organizations", { body = body, headers = headers, timeout = 10 }))
    local doc = json.decode(res.body) or {}
    return res.status, doc.error
  end

  local function without(headers, name)
    local copy = {}
    for k, v in pairs(headers) do if k ~= name then copy[k] = v end end
    return copy
  end

  local function org_count()
    local pg = require "mc.pg"
    local c = assert(pg.connect(db_url))
    local rows = assert(c:query("SELECT count(*) AS n FROM organizations WHERE org_id = $1", ORG_F))
    c:close()
    return tonumber(rows[1].n)
  end

  it("refuses a tampered body, a wrong secret, stale and future timestamps, missing headers, "
    .. "then takes the genuine request once and refuses its replay", function()
    local now = math.floor(host.time())
    local headers = stack.sign(BODY, now)
    local tampered = BODY:gsub("Forged Co", "Forged Cp")
    local cases = {
      { "a tampered body", tampered, headers, "bad signature" },
      { "a wrong secret", BODY, stack.sign(BODY, now, "not-the-secret"), "bad signature" },
      { "a stale timestamp", BODY, stack.sign(BODY, now - 301), "stale X-Timestamp (more than 300 s from our clock)" },
      { "a future timestamp", BODY, stack.sign(BODY, now + 301), "stale X-Timestamp (more than 300 s from our clock)" },
      { "no X-Signature", BODY, without(headers, "X-Signature"), "missing X-Timestamp or X-Signature" },
      { "no X-Timestamp", BODY, without(headers, "X-Timestamp"), "missing X-Timestamp or X-Signature" },
      { "the signature of another timestamp", BODY, { ["Content-Type"] = "application/json",
        ["X-Timestamp"] = tostring(now - 1), ["X-Signature"] = headers["X-Signature"] }, "bad signature" },
    }
    for _, case in ipairs(cases) do
      local status, err = send(case[2], case[3])
      assert.equal(401, status, case[1])
      assert.equal(case[4], err, case[1])
    end
    assert.equal(0, org_count())
    -- none of the forgeries used up the genuine request's signature
    local status, err = send(BODY, headers)
    assert.equal(202, status, err)
    assert.equal(1, org_count())
    status, err = send(BODY, headers)
    assert.equal(401, status)
    assert.equal("replayed request (this signature was already used)", err)
    local log = web:log()
    assert.is_nil(log:find("traceback", 1, true), log)
  end)
end)

describe("a Postgres outage", function()
  it("answers the operator's GET /organizations/:id with 503 and JSON, no traceback in the log", function()
    local dead = "postgres://postgres@127.0.0.1:" .. server.free_port() .. "/nowhere"
    local web, url = start(dead)
    local res = assert(http.get(url .. "/organizations/" .. ORG, { headers = {
      Authorization = "Bearer " .. stack.ADMIN_TOKEN } }))
    local body = json.decode(res.body)
    local log = web:log()
    web:stop()
    assert.equal(503, res.status)
    assert.equal("the database is unavailable", body.error)
    assert.is_nil(log:find("traceback", 1, true), log)
    assert.is_nil(log:find("status=500", 1, true), log)
  end)
end)
