local crypto = require "mc.crypto"

local hex, unhex = crypto.to_hex, function(s) return assert(crypto.from_hex(s)) end

local K1 = crypto.to_base64(string.rep("\1", 32))
local K2 = crypto.to_base64(string.rep("\2", 32))

describe("mc.crypto", function()
  describe("AES-256-GCM", function()
    -- NIST GCM test vector (as in OpenSSL's demos/cipher/aesgcm.c)
    local key = unhex("eebc1f57487f51921c0465665f8ae6d1658bb26de6f8a069a3520293a572078f")
    local iv = unhex("99aa3e68ed8173a0eed06684")
    local pt = unhex("f56e87055bc32d0eeb31b2eacc2bf2a5")
    local aad = unhex("4d23c3cec334b49bdb370c437fec78de")
    local ct_tag = "f7264413a84c0e7cd536867eb9f21736" .. "67ba0510262ae487d737ee6298f77e0c"

    it("matches the known-answer vector", function()
      assert.equal(ct_tag, hex(crypto.aead_seal(key, iv, pt, aad)))
      assert.equal(hex(pt), hex(assert(crypto.aead_open(key, iv, unhex(ct_tag), aad))))
    end)

    -- McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", the
    -- 256-bit-key test cases 14 and 16 (16: 60 bytes of plaintext, 20 of AAD)
    it("passes the GCM specification's test cases 14 and 16 (AES-256)", function()
      local k0 = string.rep("\0", 32)
      assert.equal("cea7403d4d606b6e074ec5d3baf39d18" .. "d0d1c8a799996bf0265b98b5d48ab919",
        hex(crypto.aead_seal(k0, string.rep("\0", 12), string.rep("\0", 16))))
      local k16 = unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
      local iv16 = unhex("cafebabefacedbaddecaf888")
      local p16 = unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        .. "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
      local a16 = unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
      local c16 = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        .. "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
      local t16 = "76fc6ece0f4e1768cddf8853bb2d551b"
      assert.equal(c16 .. t16, hex(crypto.aead_seal(k16, iv16, p16, a16)))
      assert.equal(hex(p16), hex(assert(crypto.aead_open(k16, iv16, unhex(c16 .. t16), a16))))
      assert.same({ nil, "invalid token" }, { crypto.aead_open(k16, iv16, unhex(c16 .. t16), a16:sub(2)) })
    end)

    it("refuses a flipped bit in ciphertext, tag or aad", function()
      local sealed = unhex(ct_tag)
      for _, pos in ipairs({ 1, 16, 17, 32 }) do
        local b = sealed:byte(pos)
        local bad = sealed:sub(1, pos - 1) .. string.char(b ~ 1) .. sealed:sub(pos + 1)
        assert.same({ nil, "invalid token" }, { crypto.aead_open(key, iv, bad, aad) })
      end
      assert.same({ nil, "invalid token" }, { crypto.aead_open(key, iv, sealed, aad .. "x") })
      assert.same({ nil, "invalid token" }, { crypto.aead_open(key, iv, "short", aad) })
    end)

    it("raises on a key or nonce of the wrong size", function()
      assert.has_error(function() crypto.aead_seal("short", iv, pt) end)
      assert.has_error(function() crypto.aead_seal(key, "short", pt) end)
    end)
  end)

  describe("seal and open", function()
    local ring = assert(crypto.keyring("k1:" .. K1))

    it("round-trips any bytes", function()
      for _, s in ipairs({ "", "x", "refresh-token-123", string.rep("\0\255", 5000), "é😀" }) do
        local token = ring:seal(s, "org:1:refresh_token")
        assert.matches("^v1%.k1%.[%w_%-]+$", token)
        assert.equal(s, ring:open(token, "org:1:refresh_token"))
      end
    end)

    it("uses a fresh nonce every time", function()
      assert.are_not.equal(ring:seal("same"), ring:seal("same"))
    end)

    it("fails to open under another context", function()
      local token = ring:seal("secret", "org:1:access_token")
      assert.same({ nil, "invalid token" }, { ring:open(token, "org:2:access_token") })
      assert.same({ nil, "invalid token" }, { ring:open(token) })
    end)

    it("detects tampering and malformed tokens", function()
      local token = ring:seal("secret", "c")
      local body = token:sub(7)
      local flipped = body:sub(1, 20) .. (body:sub(21, 21) == "A" and "B" or "A") .. body:sub(22)
      for _, bad in ipairs({ "v1.k1." .. flipped, "v2.k1." .. body, "v1.k1.", "garbage", "v1.k1.!!!", 42 }) do
        local plain, err = ring:open(bad, "c")
        assert.is_nil(plain)
        assert.equal("invalid token", err)
      end
    end)

    it("refuses a token re-labelled with another key id", function()
      local both = assert(crypto.keyring("k2:" .. K1 .. ",k1:" .. K1))
      local token = both:seal("secret", "c") -- sealed under k2 (same key bytes as k1)
      local relabelled = token:gsub("^v1%.k2%.", "v1.k1.")
      assert.same({ nil, "invalid token" }, { both:open(relabelled, "c") })
    end)

    it("rotates keys: the first seals, all open", function()
      local old = assert(crypto.keyring("k1:" .. K1))
      local rotated = assert(crypto.keyring("k2:" .. K2 .. ", k1:" .. K1))
      local old_token = old:seal("secret", "c")
      local new_token = rotated:seal("secret", "c")
      assert.matches("^v1%.k2%.", new_token)
      assert.equal("secret", rotated:open(old_token, "c"))
      assert.equal("secret", rotated:open(new_token, "c"))
      assert.same({ nil, "unknown key id" }, { old:open(new_token, "c") })
    end)

    it("rejects malformed key specs", function()
      for _, spec in ipairs({ "", "k1", "k1:notbase64!", "k1:" .. crypto.to_base64("short"),
                              "bad id:" .. K1, "k1:" .. K1 .. ",k1:" .. K2 }) do
        local r, err = crypto.keyring(spec)
        assert.is_nil(r, spec)
        assert.is_string(err)
      end
    end)
  end)

  describe("primitives", function()
    it("computes HMAC-SHA256 (RFC 4231 test case 2)", function()
      assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        hex(crypto.hmac_sha256("Jefe", "what do ya want for nothing?")))
    end)

    it("computes SHA-256 and SHA-1", function()
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex(crypto.sha256("abc")))
      assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(crypto.sha1("abc")))
    end)

    it("returns random bytes of the asked length", function()
      assert.equal(32, #crypto.random(32))
      assert.equal("", crypto.random(0))
      assert.are_not.equal(crypto.random(16), crypto.random(16))
      assert.has_error(function() crypto.random(-1) end)
    end)

    it("compares in constant time", function()
      assert.is_true(crypto.equal("abc", "abc"))
      assert.is_false(crypto.equal("abc", "abd"))
      assert.is_false(crypto.equal("abc", "ab"))
      assert.is_true(crypto.equal("", ""))
    end)

    it("encodes and decodes hex", function()
      assert.equal("00ff10", hex("\0\255\16"))
      assert.equal("\0\255\16", crypto.from_hex("00FF10"))
      assert.same({ nil, "invalid hex" }, { crypto.from_hex("abc") })
      assert.same({ nil, "invalid hex" }, { crypto.from_hex("zz") })
    end)

    it("encodes and decodes base64, standard and url-safe", function()
      local cases = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", ["\251\255"] = "+/8=" }
      for plain, b64 in pairs(cases) do
        assert.equal(b64, crypto.to_base64(plain))
        assert.equal(plain, crypto.from_base64(b64))
      end
      assert.equal("-_8", crypto.to_base64url("\251\255"))
      assert.equal("\251\255", crypto.from_base64url("-_8"))
      assert.equal("\251\255", crypto.from_base64url("-_8="))
      for _, bad in ipairs({ "Zg=", "Z", "Zg==Zg==", "Zm 9v", "Zm9v\n", "+/8=" }) do
        local v, err = (bad == "+/8=" and crypto.from_base64url or crypto.from_base64)(bad)
        assert.is_nil(v, bad)
        assert.equal("invalid base64", err)
      end
      local blob = crypto.random(1000)
      assert.equal(blob, crypto.from_base64(crypto.to_base64(blob)))
      assert.equal(blob, crypto.from_base64url(crypto.to_base64url(blob)))
    end)
  end)
end)
