-- crypto.seal/open use the process keyring from ENCRYPTION_KEYS; each case runs
-- in a fresh binary with its own environment.
local proc = require "support.process"
local crypto = require "mc.crypto"

local K1 = crypto.to_base64(string.rep("\1", 32))
local K2 = crypto.to_base64(string.rep("\2", 32))

describe("crypto with ENCRYPTION_KEYS", function()
  local dir, cleanup
  setup(function() dir, cleanup = proc.tmpdir() end)
  teardown(function() cleanup() end)

  local function run(code, keys)
    return proc.mc({ "run", proc.write(dir .. "/c.lua", code) }, { env = { ENCRYPTION_KEYS = keys } })
  end

  it("seals under the first key; a rotated set still opens old tokens", function()
    local r = run("io.write(mc.crypto.seal('tok', 'org:1'))", "old:" .. K1)
    assert.equal(0, r.code, r.stderr)
    local token = r.stdout
    assert.matches("^v1%.old%.", token)
    r = run(string.format("io.write(assert(mc.crypto.open(%q, 'org:1')))", token), "new:" .. K2 .. ",old:" .. K1)
    assert.equal(0, r.code, r.stderr)
    assert.equal("tok", r.stdout)
  end)

  it("says clearly when ENCRYPTION_KEYS is missing or malformed", function()
    local r = run("mc.crypto.seal('x')", false)
    assert.equal(1, r.code)
    assert.matches("ENCRYPTION_KEYS is required", r.stderr, 1, true)
    r = run("mc.crypto.seal('x')", "k1:" .. crypto.to_base64("short"))
    assert.equal(1, r.code)
    assert.matches('ENCRYPTION_KEYS: key "k1" must be 32 bytes', r.stderr, 1, true)
    assert.is_nil(r.stderr:find(crypto.to_base64("short"), 1, true))
  end)
end)
