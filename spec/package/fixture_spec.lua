-- The package's SignatureFixture (a static resource the Apex tests load with
-- SELECT Body FROM StaticResource) read from disk: the Lua side of one fixture,
-- so the package and the app cannot drift. Its signatures are mc.crypto's HMAC
-- and pass the app's real verifier (lib.signature); its install body is one the
-- app's parser takes field for field; and tools/callback, given the fixture's
-- context, builds the very same bytes and signature as the Apex handler.
local host = require "mc.host"
local json = require "mc.json"
local file = require "mc.file"
local crypto = require "mc.crypto"
local redis = require "mc.redis"
local conns = require "mc.conns"
local proc = require "support.process"
local env_vars = require "support.env_vars"
local signature = require "lib.signature"
local install = require "onboarding.install"

local FIXTURE = "force-app/main/default/staticresources/SignatureFixture.json"

local fx = json.decode(assert(file.read(host.root .. "/" .. FIXTURE)))

local function request(part)
  return { path = part.path, body = part.body, headers = { ["x-timestamp"] = fx.timestamp,
    ["x-signature"] = part.signature } }
end

-- tools/callback --print with the fixture's secret, clock and nonce -> method,
-- path, headers, body
local function callback(args, nonce)
  local r = proc.run({ host.root .. "/tools/callback", "--print", table.unpack(args) }, { env = {
    CALLBACK_SECRET = fx.secret, CALLBACK_TIMESTAMP = fx.timestamp, CALLBACK_NONCE = nonce } })
  assert.equal(0, r.code, r.stderr)
  local head, body = r.stdout:match("^(.-)\n\n(.*)\n$")
  local method, path = head:match("^(%u+) (%S+)")
  local headers = {}
  for k, v in head:gmatch("\n([%w-]+): ([^\n]*)") do headers[k:lower()] = v end
  return { method = method, path = path, headers = headers, body = body }
end

describe("the package's SignatureFixture", function()
  local config = env_vars.layered({ CALLBACK_SECRET = fx.secret, CALLBACK_SECRET_PREVIOUS = false,
    CALLBACK_SIGNATURES = false, CALLBACK_TOLERANCE = false })
  local r, clock = nil, host.time

  before_each(function()
    config:set()
    r = assert(redis.connect())
    conns.use("redis", r)
    host.time = function() return tonumber(fx.timestamp) + 5 end -- the fixture's moment
  end)
  after_each(function()
    host.time = clock
    for _, name in ipairs({ "install", "uninstall" }) do r:call("DEL", "mc:callback:sig:" .. fx[name].signature) end
    conns.use("redis", nil)
    r:close()
    config:restore()
  end)

  it("holds signatures that are mc.crypto's HMAC-SHA256 of <timestamp>.<body>", function()
    for _, name in ipairs({ "install", "uninstall" }) do
      local part = fx[name]
      assert.equal(crypto.to_hex(crypto.hmac_sha256(fx.secret, fx.timestamp .. "." .. part.body)), part.signature)
      assert.equal(signature.sign(fx.secret, fx.timestamp, part.body), part.signature)
    end
  end)

  it("passes the app's verifier once, and no other body or secret does", function()
    for _, name in ipairs({ "install", "uninstall" }) do
      assert.same({ true }, { signature.verify(request(fx[name])) })
      assert.same({ nil, "replayed request (this signature was already used)" },
        { signature.verify(request(fx[name])) })
    end
    local tampered = request(fx.install)
    tampered.body = tampered.body:gsub('"Acme"', '"Acme2"')
    assert.same({ nil, "bad signature" }, { signature.verify(tampered) })
    config:set({ CALLBACK_SECRET = "another secret" })
    assert.same({ nil, "bad signature" }, { signature.verify(request(fx.install)) })
  end)

  it("holds an install body the app's parser takes, value for value", function()
    local ctx = fx.install.context
    local f, errors = install.parse(json.decode(fx.install.body))
    assert.is_nil(errors)
    assert.same({ ctx.org_id, ctx.org_name, ctx.admin_email, ctx.installer_id, ctx.is_upgrade, ctx.is_push,
      ctx.previous_version, ctx.is_sandbox and "sandbox" or "production" },
      { f.org_id, f.org_name, f.admin_email, f.installer_id, f.is_upgrade, f.is_push, f.previous_version,
        f.environment })
    assert.equal("POST", fx.install.method)
    assert.equal("/organizations", fx.install.path)
  end)

  it("holds an uninstall body naming the org of its path (what DELETE /organizations/:org_id checks)", function()
    assert.equal("DELETE", fx.uninstall.method)
    assert.equal("/organizations/" .. json.decode(fx.uninstall.body).org_id, fx.uninstall.path)
  end)

  it("is what tools/callback sends for the same context: the same bytes, the same signature", function()
    local ctx = fx.install.context
    local req = callback({ "--installer-id", ctx.installer_id, "--previous-version", ctx.previous_version,
      "upgrade", ctx.org_id, ctx.org_name, ctx.admin_email }, ctx.nonce)
    assert.equal(fx.install.method, req.method)
    assert.equal(fx.install.path, req.path)
    assert.equal(fx.install.body, req.body)
    assert.equal(fx.install.signature, req.headers["x-signature"])
    assert.equal(fx.timestamp, req.headers["x-timestamp"])

    local u = fx.uninstall.context
    req = callback({ "uninstall", u.org_id }, u.nonce)
    assert.equal(fx.uninstall.path, req.path)
    assert.equal(fx.uninstall.body, req.body)
    assert.equal(fx.uninstall.signature, req.headers["x-signature"])
  end)

  it("keeps tools/callback's keys and value types those of the Apex body in every variant", function()
    local want = json.decode(fx.install.body)
    local types = function(doc)
      local out = {}
      for k, v in pairs(doc) do out[k] = type(v) end
      return out
    end
    local first = json.decode(callback({ "install" }).body) -- a first install: no previous version
    local expected = types(want)
    expected.previous_version = nil
    assert.same(expected, types(first))
    local push = json.decode(callback({ "--push", "upgrade" }).body)
    assert.same(types(want), types(push))
    assert.is_true(push.is_push)
    local custom = json.decode(callback({ "--environment", "custom", "--login-domain", "acme.my.salesforce.com",
      "install" }).body)
    assert.equal("string", type(custom.login_domain))
    assert.is_truthy(install.parse(custom))
  end)
end)
