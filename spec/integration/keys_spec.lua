-- scripts/keys.lua and `multiconnect keys status|rotate`: every stored token
-- counted per key id, re-sealed under the first key in batches, resumable, the
-- old key removable afterwards. Database mc_spec_keys, Redis 26 (unused but
-- flushed by the fixture).
local crypto = require "mc.crypto"
local json = require "mc.json"
local proc = require "support.process"
local fixture = require "support.onboarding_fixture"
local salesforce = require "clients.salesforce"
local keys = require "keys"

local OLD = "k1:" .. crypto.new_key()
local NEW = "k2:" .. crypto.new_key()

describe("keys", function()
  local fx = fixture.new(_ENV, { db = "mc_spec_keys", redis = 26 })
  local old, both = assert(crypto.keyring(OLD)), assert(crypto.keyring(NEW .. "," .. OLD))
  local new = assert(crypto.keyring(NEW))

  -- n orgs, each with both tokens sealed under ring
  local function orgs_with_tokens(n, ring)
    for i = 1, n do
      local id = string.format("00D5e00000S%04dAAA", i)
      local row = { org_id = id }
      fx:org(id, { state = "active",
        access_token = ring:seal("access-" .. i, salesforce.context(row, "access_token")),
        refresh_token = ring:seal("refresh-" .. i, salesforce.context(row, "refresh_token")) })
    end
  end

  local function mc(args, spec)
    return proc.mc(args, { env = { DATABASE_URL = fx.tdb.url, ENCRYPTION_KEYS = spec } })
  end

  it("counts the tokens per key id, and those the keys cannot open", function()
    orgs_with_tokens(3, old)
    fx:org("00D5e00000S0009AAA", { state = "received" }) -- no tokens yet
    local s = assert(keys.status(fx.conn, both))
    assert.same({ by_kid = { k1 = 6 }, total = 6, unreadable = 0 }, s)
    assert.equal(6, assert(keys.status(fx.conn, new)).unreadable)
  end)

  it("re-seals every token under the first key, in batches, and the tokens open with it alone", function()
    orgs_with_tokens(5, old)
    local seen = {}
    local done = assert(keys.rotate(fx.conn, both,
      { batch = 2, progress = function(t) seen[#seen + 1] = t.rotated end }))
    assert.same({ rotated = 10, failed = 0, total = 10, kid = "k2" }, done)
    assert.same({ 4, 8, 10 }, seen) -- three batches of at most two orgs
    assert.same({ by_kid = { k2 = 10 }, total = 10, unreadable = 0 }, assert(keys.status(fx.conn, new)))
    local row = fx:row("00D5e00000S0003AAA")
    assert.equal("refresh-3", new:open(row.refresh_token, salesforce.context(row, "refresh_token")))
    -- a second run has nothing left to do
    assert.same({ rotated = 0, failed = 0, total = 0, kid = "k2" }, assert(keys.rotate(fx.conn, both)))
  end)

  it("resumes where a run stopped, and counts a token no key opens without looping on it", function()
    orgs_with_tokens(4, old)
    -- a run killed after its first batch: that batch stays done
    local ok, err = pcall(keys.rotate, fx.conn, both, { batch = 1, progress = function() error("killed", 0) end })
    assert.same({ false, "killed" }, { ok, err })
    if fx.conn:status() ~= "idle" then fx.conn:exec("ROLLBACK") end
    assert.same({ k1 = 6, k2 = 2 }, assert(keys.status(fx.conn, both)).by_kid)
    -- one token sealed under a key nobody has any more
    local lost = assert(crypto.keyring("k0:" .. crypto.new_key()))
    local row = { org_id = "00D5e00000S0004AAA" }
    assert(require("onboarding.orgs").update(fx.conn, row.org_id,
      { access_token = lost:seal("x", salesforce.context(row, "access_token")) }))
    local done = assert(keys.rotate(fx.conn, both, { batch = 2 }))
    assert.same({ rotated = 5, failed = 1, total = 6, kid = "k2" }, done)
    assert.same({ by_kid = { k0 = 1, k2 = 7 }, total = 8, unreadable = 1 }, assert(keys.status(fx.conn, both)))
  end)

  it("is the keys status and keys rotate commands, with progress and a final count", function()
    orgs_with_tokens(3, old)
    local r = mc({ "keys", "status" }, NEW .. "," .. OLD)
    assert.equal(0, r.code, r.stderr)
    assert.matches("k1%s+6\n", r.stdout)
    assert.matches("6 tokens, 0 unreadable", r.stdout, 1, true)
    r = mc({ "keys", "rotate", "--batch", "2" }, NEW .. "," .. OLD)
    assert.equal(0, r.code, r.stderr)
    assert.matches("rotated 4 of 6 tokens to k2", r.stdout, 1, true)
    assert.matches("done: 6 tokens re-sealed under k2, 0 could not be opened", r.stdout, 1, true)
    -- the old key removed: everything still opens
    r = mc({ "keys", "status", "--json" }, NEW)
    assert.equal(0, r.code, r.stderr)
    assert.same({ by_kid = { k2 = 6 }, total = 6, unreadable = 0 }, json.decode(r.stdout))
    -- the new key removed instead: nothing opens, and it says so
    r = mc({ "keys", "status" }, OLD)
    assert.equal(1, r.code)
    assert.matches("6 unreadable", r.stdout, 1, true)
    assert.equal(2, mc({ "keys", "rotate", "--batch", "none" }, NEW).code)
  end)
end)
