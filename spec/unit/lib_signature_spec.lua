-- lib.signature: the package's HMAC over "<timestamp>.<body>", and verify's
-- checks in their order (switched off, no secret, headers, timestamp form, the
-- digest's form, staleness, the digest under the current or the previous secret),
-- each refusal answered before the replay check in Redis is reached. A digest that
-- matches goes on to that check; here Redis is a closed handle, so reaching it
-- answers 503 (the replay keys themselves: spec/integration/handlers_organizations_spec.lua).
local host = require "mc.host"
local redis = require "mc.redis"
local conns = require "mc.conns"
local signature = require "lib.signature"
local env_vars = require "support.env_vars"
local web_request = require "support.web_request"

local SECRET, OLD = "s3cret", "0ld-s3cret"
local BODY = '{"org_id":"x"}'
local UNAVAILABLE = { nil, "replay check unavailable: closed", 503 }

describe("lib.signature", function()
  local config = env_vars.layered({ CALLBACK_SECRET = SECRET, CALLBACK_SECRET_PREVIOUS = false,
    CALLBACK_SIGNATURES = false, CALLBACK_TOLERANCE = false })
  local closed

  setup(function()
    closed = assert(redis.connect())
    closed:close()
  end)
  before_each(function()
    config:set()
    conns.use("redis", closed)
  end)
  after_each(function()
    config:restore()
    conns.use("redis", nil)
  end)

  local function verify(req) return { signature.verify(req) } end

  local function now() return math.floor(host.time()) end

  it("sign: the hex HMAC-SHA256 of <timestamp>.<body> (what the Apex side computes)", function()
    -- openssl: printf '1700000000.{"org_id":"x"}' | openssl dgst -sha256 -hmac s3cret
    assert.equal("77323d6ea1047b836c2618f3b36fc83e42decf62471012b00a9ea7c66b710aab",
      signature.sign(SECRET, 1700000000, BODY))
    assert.equal(signature.sign(SECRET, 1700000000, BODY), signature.sign(SECRET, "1700000000", BODY))
    assert.not_equal(signature.sign(SECRET, 1700000001, BODY), signature.sign(SECRET, 1700000000, BODY))
  end)

  it("a matching digest under the current secret reaches the replay check", function()
    assert.same(UNAVAILABLE, verify(web_request.signed(SECRET, BODY)))
  end)

  it("accepts the previous secret during a rotation, and only while it is configured", function()
    local req = web_request.signed(OLD, BODY)
    assert.same({ nil, "bad signature" }, verify(req))
    config:set({ CALLBACK_SECRET_PREVIOUS = OLD })
    assert.same(UNAVAILABLE, verify(req))
    assert.same(UNAVAILABLE, verify(web_request.signed(SECRET, BODY)))
  end)

  it("takes the digest in upper case and with a sha256= prefix", function()
    local req = web_request.signed(SECRET, BODY)
    req.headers["x-signature"] = "sha256=" .. req.headers["x-signature"]:upper()
    assert.same(UNAVAILABLE, verify(req))
  end)

  it("refuses a digest of another body, timestamp or secret", function()
    local req = web_request.signed(SECRET, BODY)
    req.body = '{"org_id":"y"}'
    assert.same({ nil, "bad signature" }, verify(req))
    req = web_request.signed(SECRET, BODY)
    req.headers["x-timestamp"] = tostring(tonumber(req.headers["x-timestamp"]) - 1)
    assert.same({ nil, "bad signature" }, verify(req))
    assert.same({ nil, "bad signature" }, verify(web_request.signed("other", BODY)))
    -- an absent body is signed as ""
    req = web_request.signed(SECRET, "")
    req.body = nil
    assert.same(UNAVAILABLE, verify(req))
  end)

  it("refuses missing headers, a timestamp that is not Unix seconds, a digest that is not 64 hex digits", function()
    local req = web_request.signed(SECRET, BODY)
    req.headers["x-signature"] = nil
    assert.same({ nil, "missing X-Timestamp or X-Signature" }, verify(req))
    req = web_request.signed(SECRET, BODY)
    req.headers["x-timestamp"] = nil
    assert.same({ nil, "missing X-Timestamp or X-Signature" }, verify(req))
    for _, ts in ipairs({ "1.5", "-1", "soon", "1234567890123" }) do
      req = web_request.signed(SECRET, BODY)
      req.headers["x-timestamp"] = ts
      assert.same({ nil, "X-Timestamp must be Unix seconds" }, verify(req), ts)
    end
    for _, sig in ipairs({ "abc", string.rep("g", 64), string.rep("a", 65) }) do
      req = web_request.signed(SECRET, BODY)
      req.headers["x-signature"] = sig
      assert.same({ nil, "X-Signature must be 64 hex digits" }, verify(req), sig)
    end
  end)

  it("refuses a timestamp outside CALLBACK_TOLERANCE either way, and keeps one just inside", function()
    local stale = "stale X-Timestamp (more than 300 s from our clock)"
    assert.same({ nil, stale }, verify(web_request.signed(SECRET, BODY, { timestamp = now() - 302 })))
    assert.same({ nil, stale }, verify(web_request.signed(SECRET, BODY, { timestamp = now() + 302 })))
    assert.same(UNAVAILABLE, verify(web_request.signed(SECRET, BODY, { timestamp = now() - 298 })))
    config:set({ CALLBACK_TOLERANCE = "10" })
    assert.same({ nil, "stale X-Timestamp (more than 10 s from our clock)" },
      verify(web_request.signed(SECRET, BODY, { timestamp = now() - 12 })))
  end)

  it("503 when no CALLBACK_SECRET is configured: nothing is accepted", function()
    config:set({ CALLBACK_SECRET = false, CALLBACK_SECRET_PREVIOUS = OLD })
    assert.same({ nil, "the service is not configured to accept callbacks", 503 },
      verify(web_request.signed(OLD, BODY)))
  end)

  it("CALLBACK_SIGNATURES=off accepts anything without touching Redis", function()
    config:set({ CALLBACK_SIGNATURES = "off", CALLBACK_SECRET = false })
    local req = web_request.new{ body = BODY }
    assert.same({ true }, verify(req))
    assert.is_nil(rawget(req, "signature_key"))
    signature.release(req) -- nothing to give back: no error
  end)
end)

-- The MAC is compared in constant time: no timed assertion (a loaded machine makes
-- them lie either way), but the two things that make it so, checked directly.
describe("lib.signature's MAC comparison", function()
  local crypto = require "mc.crypto"
  local proc = require "support.process"

  -- instructions(b) -> the instructions valgrind counts inside mc.crypto.equal
  -- (core/crypto.c's c_equal and what it calls: OpenSSL's CRYPTO_memcmp) over 1,000
  -- comparisons of 64 "a"s with b. Instruction counts are exact and repeatable.
  local function instructions(b)
    local dir, cleanup = proc.tmpdir()
    local script = proc.write(dir .. "/equal.lua", [[
      local crypto = require "mc.crypto"
      local a = string.rep("a", 64)
      for _ = 1, 1000 do crypto.equal(a, arg[1]) end
    ]])
    local r = proc.run({ "valgrind", "--tool=callgrind", "--toggle-collect=c_equal",
      "--callgrind-out-file=" .. dir .. "/callgrind.out", proc.exe, "run", script, b })
    cleanup()
    assert(r.code == 0, r.stderr)
    local n = r.stderr:match("Collected : (%d+)")
    return assert(tonumber(n), r.stderr)
  end

  proc.leak_it("crypto.equal runs the same instructions wherever two digests differ", function()
    local first = instructions("b" .. string.rep("a", 63))
    local last = instructions(string.rep("a", 63) .. "b")
    local same = instructions(string.rep("a", 64))
    assert.equal(first, last)
    assert.equal(first, same)
    -- the count does see an early return: strings of another length are answered
    -- before their bytes are read (a digest is always 64 hex digits by then)
    assert.truthy(instructions("aaa") < first * 0.5)
  end)

  it("verify compares the digest against every configured secret, whichever matches", function()
    local config = env_vars.layered({ CALLBACK_SECRET = SECRET, CALLBACK_SECRET_PREVIOUS = OLD,
      CALLBACK_SIGNATURES = false, CALLBACK_TOLERANCE = false })
    local closed = assert(redis.connect())
    closed:close()
    config:set()
    conns.use("redis", closed)
    local real, seen = crypto.equal, {}
    crypto.equal = function(a, b) -- luacheck: ignore 122 (a spy; the real compare still answers)
      seen[#seen + 1] = { #a, #b }
      return real(a, b)
    end
    local ok, err = pcall(function()
      for _, secret in ipairs({ SECRET, OLD, "neither" }) do
        seen = {}
        signature.verify(web_request.signed(secret, BODY))
        assert.same({ { 64, 64 }, { 64, 64 } }, seen, secret)
      end
    end)
    crypto.equal = real
    config:restore()
    conns.use("redis", nil)
    assert(ok, err)
  end)
end)
