-- lib.tokens: the sealed tokens our mailed links carry: the sign-in link's
-- (org and expiry, purpose "authenticate") and Heroku Connect's return
-- (org and connection, purpose "connection_auth_complete").
local crypto = require "mc.crypto"
local tokens = require "lib.tokens"
local env_vars = require "support.env_vars"
local stack = require "support.stack"

local ORG = "00D5e000000AbCdEAK"
local OTHER_KEYS = "k2:" .. string.rep("B", 43) .. "="

describe("lib.tokens", function()
  local config = env_vars.layered({ ENCRYPTION_KEYS = stack.KEYS, AUTHENTICATE_LINK_TTL = false })
  before_each(function() config:set() end)
  after_each(function() config:restore() end)

  local function flip(t, at) -- one character of the token changed
    local c = t:sub(at, at)
    return t:sub(1, at - 1) .. (c == "A" and "B" or "A") .. t:sub(at + 1)
  end

  describe("authenticate", function()
    it("opens to the org id while it lasts; expires after AUTHENTICATE_LINK_TTL (default 7 days)", function()
      local t = tokens.authenticate({ org_id = ORG })
      assert.same({ ORG }, { tokens.open_authenticate(t) })
      local expires = tonumber(crypto.open(t, "authenticate"):match(":(%d+)$"))
      assert(math.abs(expires - (os.time() + 7 * 24 * 3600)) <= 1, "expires " .. expires)
      config:set({ AUTHENTICATE_LINK_TTL = "60" })
      expires = tonumber(crypto.open(tokens.authenticate({ org_id = ORG }), "authenticate"):match(":(%d+)$"))
      assert(math.abs(expires - (os.time() + 60)) <= 1, "expires " .. expires)
    end)

    it("expired: sealed with a past expiry", function()
      local past = crypto.seal(ORG .. ":" .. (os.time() - 1), "authenticate")
      assert.same({ nil, "expired" }, { tokens.open_authenticate(past) })
      assert.same({ ORG }, { tokens.open_authenticate(crypto.seal(ORG .. ":" .. (os.time() + 5), "authenticate")) })
    end)

    it("invalid: another purpose, a tampered token, a key we do not hold, malformed contents, not a string", function()
      local t = tokens.authenticate({ org_id = ORG })
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(tokens.connect({ org_id = ORG }, "c-1")) })
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(flip(t, #t - 4)) })
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(t:sub(1, -2)) })
      local not_org = crypto.seal("005notanorg:" .. (os.time() + 60), "authenticate")
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(not_org) })
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(crypto.seal(ORG, "authenticate")) })
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(nil) })
      assert.same({ nil, "invalid" }, { tokens.open_authenticate({}) })
      -- sealed under a key this process does not hold (mc.crypto reads ENCRYPTION_KEYS once)
      local foreign = assert(crypto.keyring(OTHER_KEYS)):seal(ORG .. ":" .. (os.time() + 60), "authenticate")
      assert.same({ nil, "invalid" }, { tokens.open_authenticate(foreign) })
    end)
  end)

  describe("connect", function()
    it("opens to the org and its connection (a connection id may hold colons)", function()
      assert.same({ ORG, "c-1" }, { tokens.open_connect(tokens.connect({ org_id = ORG }, "c-1")) })
      assert.same({ ORG, "a:b" }, { tokens.open_connect(tokens.connect({ org_id = ORG }, "a:b")) })
    end)

    it("nothing for another purpose, a tampered token, a key we do not hold", function()
      local t = tokens.connect({ org_id = ORG }, "c-1")
      assert.is_nil(tokens.open_connect(tokens.authenticate({ org_id = ORG })))
      assert.is_nil(tokens.open_connect(flip(t, #t - 4)))
      assert.is_nil(tokens.open_connect("garbage"))
      assert.is_nil(tokens.open_connect(crypto.seal("not-an-org:c-1", "connection_auth_complete")))
      local other = assert(crypto.keyring(OTHER_KEYS))
      assert.is_nil(tokens.open_connect(other:seal(ORG .. ":c-1", "connection_auth_complete")))
    end)

    it("each seal is new: two tokens for the same connection differ", function()
      assert.not_equal(tokens.connect({ org_id = ORG }, "c-1"), tokens.connect({ org_id = ORG }, "c-1"))
    end)
  end)
end)
