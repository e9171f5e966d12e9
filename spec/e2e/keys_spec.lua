-- Key rotation end to end: an org onboarded with its Salesforce tokens sealed
-- under k1; a new key put first; `multiconnect keys rotate` moves every token
-- to it; with k1 removed, the app's own client opens the tokens, refreshes the
-- expired session and calls the org's Apex REST. Redis dbs 23 (app) and 24
-- (sandbox); database mc_keys.
local stack = require "support.stack"
local proc = require "support.process"
local crypto = require "mc.crypto"

local ACME = { org_id = "00D5e000000AbCdEAK", org_name = "Acme", admin_email = "admin@acme.example" }
local NEW = "k2:" .. crypto.new_key()

-- What the console runs with the new key alone: the org's Apex call, through
-- clients.salesforce (its access token expired: the refresh token is used too).
local APEX = [[
local db, orgs, sf = require "lib.db", require "onboarding.orgs", require "clients.salesforce"
local org = assert(orgs.get(db.conn(), "00D5e000000AbCdEAK"))
local res, err = sf.apex(org, "AuthConnection", { connectionId = org.connection_id, authorizeUrl = org.authorize_url },
  function(fields) return orgs.update(db.conn(), org.org_id, fields) end)
assert(res, err)
print("apex " .. res.status)
]]

describe("key rotation end to end", function()
  local s

  setup(function()
    s = stack.start({ name = "keys", app_db = 23, sandbox_db = 24 })
  end)
  teardown(function() if s then s:stop() end end)

  local function mc(args, keys, stdin)
    local env = {}
    for k, v in pairs(s.env) do env[k] = v end
    env.ENCRYPTION_KEYS = keys
    return proc.mc(args, { env = env, stdin = stdin })
  end

  it("moves every token to the new key, and the app works with the old one removed", function()
    assert.equal(202, s:post_install(ACME).status)
    assert(s:wait_state(ACME.org_id, "active", 90), s:logs())
    local r = mc({ "keys", "status" }, NEW .. "," .. stack.KEYS)
    assert.equal(0, r.code, r.stderr)
    assert.matches("k1%s+2\n", r.stdout)
    r = mc({ "keys", "rotate" }, NEW .. "," .. stack.KEYS)
    assert.equal(0, r.code, r.stderr)
    assert.matches("done: 2 tokens re-sealed under k2, 0 could not be opened", r.stdout, 1, true)
    r = mc({ "keys", "status" }, NEW)
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("k2%s+2\n", r.stdout)
    assert.is_nil(r.stdout:find("k1", 1, true))
    -- the org's session expires, then the app, with k2 alone, uses both tokens
    s:knobs({ salesforce = { token_ttl = 1 } })
    s:wait_sessions_dead(ACME.org_id)
    r = mc({ "console", "-e", APEX }, NEW)
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("apex 200", r.stdout, 1, true)
    assert.matches('msg="salesforce session refreshed"', r.stdout, 1, true) -- the refresh token opened
    local row = assert(s.pg:query("SELECT access_token FROM organizations WHERE org_id = $1", ACME.org_id))[1]
    assert.matches("^v1%.k2%.", row.access_token) -- the refreshed token, sealed under k2
  end)
end)
