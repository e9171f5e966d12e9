local log = require "mc.log"

describe("mc.log.format", function()
  it("starts with at and msg, then fields in key order", function()
    assert.equal('at=info msg="tenant onboarded" org_id=00D000000000001 step=active',
      log.format("info", "tenant onboarded", { step = "active", org_id = "00D000000000001" }))
  end)

  it("leaves plain tokens bare and quotes the rest", function()
    assert.equal("at=warn msg=x a=plain b=\"two words\" c=\"say \\\"hi\\\"\" d=\"a=b\" e=\"\"",
      log.format("warn", "x", { a = "plain", b = "two words", c = 'say "hi"', d = "a=b", e = "" }))
  end)

  it("escapes newlines and control characters so a line stays one line", function()
    local line = log.format("error", "multi\nline\1", { trace = "a\nb" })
    assert.is_nil(line:find("\n"))
    assert.matches('msg="multi\\nline\\x01"', line, 1, true)
  end)

  it("prints numbers, booleans, null and tables", function()
    assert.equal('at=info msg=m a=1 b=true c=null d=2.5 e="{\\"k\\":1}"',
      log.format("info", "m", { a = 1, b = true, c = mc.null, d = 2.5, e = { k = 1 } }))
  end)

  it("never prints secrets", function()
    local line = log.format("info", "login postgres://u:hunter2@h/db", {
      password = "hunter2", access_token = "Zq9x", url = "redis://:pw2@h:1", auth = "Bearer abc",
    })
    assert.is_nil(line:find("hunter2", 1, true))
    assert.is_nil(line:find("Zq9x", 1, true))
    assert.is_nil(line:find("pw2", 1, true))
    assert.is_nil(line:find("abc", 1, true))
    assert.matches("password=[FILTERED]", line, 1, true)
  end)

  it("makes field names safe", function()
    assert.equal("at=info msg=m a_b=1", log.format("info", "m", { ["a b"] = 1 }))
  end)
end)
