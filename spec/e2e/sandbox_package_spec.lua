-- The sandbox's simulated org is the package: a sandbox whose force-app lacks a
-- field the default mapping names refuses that mapping (BAD_CONFIG, naming the
-- field), as a real org without the field would; the other mappings sync.
local sandbox = require "support.sandbox"
local process = require "support.process"
local http = require "mc.http"
local host = require "mc.host"
local json = require "mc.json"
local file = require "mc.file"
local crypto = require "mc.crypto"
local pg = require "mc.pg"

local ACCEPT = "application/vnd.heroku+json; version=3"
local MISSING = "force-app/main/default/objects/Tweet__c/fields/Likes__c.field-meta.xml"

-- A scratch root: every top-level entry of the repository linked, but force-app
-- copied without MISSING.
local function root_without_field()
  local root, cleanup = process.tmpdir()
  for name in require("lfs").dir(host.root) do
    if name ~= "." and name ~= ".." and name ~= "force-app" and name ~= "var" then
      assert(os.execute("ln -s " .. process.quote(host.root .. "/" .. name) .. " "
        .. process.quote(root .. "/" .. name)))
    end
  end
  assert(os.execute("cp -r " .. process.quote(host.root .. "/force-app") .. " " .. process.quote(root .. "/force-app")))
  assert(os.remove(root .. "/" .. MISSING))
  return root, cleanup
end

describe("sandbox: the simulated org takes its fields from force-app", function()
  local sb, url, root, cleanup, db
  local schema = "sb_package_" .. crypto.to_hex(crypto.random(4))

  local function call(method, path, body)
    return assert(http.request({ method = method, url = url .. path, json = body,
      headers = { Authorization = "Bearer spec-token", Accept = ACCEPT } }))
  end

  local function wait_for(path, pred)
    local last
    local ok = process.wait_for(function()
      last = call("GET", path):json()
      return pred(last)
    end, 10)
    assert.truthy(ok, path .. ": " .. json.encode(last))
    return last
  end

  setup(function()
    root, cleanup = root_without_field()
    sb, url = sandbox.start(8, { MC_ROOT = root })
    db = assert(pg.connect())
  end)
  teardown(function()
    sb:stop()
    cleanup()
    assert(db:exec("DROP SCHEMA IF EXISTS " .. pg.quote_ident(schema) .. " CASCADE"))
    db:close()
  end)

  it("refuses the default mapping's Tweet__c (Likes__c is gone) and syncs the rest", function()
    assert.equal(204, call("POST", "/__sandbox/reset").status)
    assert.equal(200, call("POST", "/__sandbox/config", { heroku = { async = false },
      connect = { config_delay = 0.1, import_delay = 0.2, sync_delay = 0.2, auto_approve = true } }).status)
    assert.equal(201, call("POST", "/heroku/apps/pkg-app/addons", { plan = "herokuconnect:demo" }).status)
    local conn = call("POST", "/connect/auth/pkg-app"):json().connections[1]
    local api = "/connect/api/v3/connections/" .. conn.id
    assert.equal(202, call("PATCH", api, { schema_name = schema, db_key = "DATABASE_URL" }).status)
    wait_for(api, function(c) return c.state == "NEED_AUTHENTICATION" end)
    assert.equal(200, assert(http.get(call("POST", api .. "/authorize_url", {}):json().redirect)).status)
    wait_for(api, function(c) return c.state == "IDLE" end)

    local mapping = json.decode(assert(file.read(host.root .. "/mappings/default.json")))
    assert.equal(202, call("POST", api .. "/actions/import", mapping).status)
    local deep = wait_for(api .. "?deep=true", function(c)
      for _, m in ipairs(c.mappings) do
        if m.state ~= "DATA_SYNCED" and m.state ~= "BAD_CONFIG" then return false end
      end
      return #c.mappings == #mapping.mappings
    end)
    local states = {}
    for _, m in ipairs(deep.mappings) do
      states[m.object_name] = m.state
      if m.state == "BAD_CONFIG" then assert.matches("Tweet__c.Likes__c", m.state_description, 1, true) end
    end
    assert.same({ Account = "DATA_SYNCED", Connection__c = "DATA_SYNCED", Contact = "DATA_SYNCED",
      Tweet__c = "BAD_CONFIG" }, states)
  end)
end)
