-- lib.text (scripts/lib/text.lua)
local text = require "lib.text"
local host = require "mc.host"

describe("lib.text.trim", function()
  it("drops leading and trailing whitespace, keeps inner", function()
    assert.equal("a b", text.trim("  \t a b \r\n "))
    assert.equal("x", text.trim("x"))
    assert.equal("", text.trim(" \t\n"))
    assert.equal("", text.trim(""))
    assert.equal("é", text.trim(" é "))
  end)

  it("is linear: a million spaces between two letters", function()
    local s = "a" .. string.rep(" ", 1000000) .. "b"
    local t = host.now()
    assert.equal(s, text.trim("  " .. s .. "  "))
    assert.truthy(host.now() - t < 2, "took " .. (host.now() - t) .. " s")
  end)
end)
