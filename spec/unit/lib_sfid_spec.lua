-- lib.sfid: what spec/unit/onboarding_install_spec.lua leaves out -- each refusal's
-- own message (the install callback shows them), the suffix alphabet's ends, and
-- org_id's paths.
local sfid = require "lib.sfid"

describe("lib.sfid", function()
  it("refuses a non-string with its own message", function()
    for _, bad in ipairs({ 42, true, {}, nil }) do
      assert.same({ nil, "must be a string" }, { sfid.to18(bad) })
    end
  end)

  it("refuses the wrong length or a non-alphanumeric character with the length message", function()
    for _, bad in ipairs({ "", "00D5e000000AbC", "00D5e000000AbCdE", "00D5e000000AbCdEA", "00D5e000000AbCdEAKX",
      "00D5e000000AbC!", "00D5e000000AbC d", "00D5e000000AbCd\n" }) do
      assert.same({ nil, "must be a 15- or 18-character Salesforce id" }, { sfid.to18(bad) }, bad)
    end
  end)

  it("uses both ends of the suffix alphabet: A for no capitals in a chunk, 5 for all five", function()
    assert.equal("abcdeabcdeabcdeAAA", sfid.to18("abcdeabcdeabcde"))
    assert.equal("ABCDEABCDEABCDE555", sfid.to18("ABCDEABCDEABCDE"))
    -- one capital per chunk, at the first then the last place: bit 0 is the first character
    assert.equal("BAA", sfid.to18("Abcdeabcdeabcde"):sub(16))
    assert.equal("AAQ", sfid.to18("abcdeabcdeabcdE"):sub(16))
    assert.equal("5AA", sfid.to18("ABCDEabcdeabcde"):sub(16))
  end)

  it("gives back a correct 18-character id with its suffix upper-cased, the first 15 untouched", function()
    assert.equal("00D5e000000AbCdEAK", sfid.to18("00D5e000000AbCdEAK"))
    assert.equal("00D5e000000AbCdEAK", sfid.to18("00D5e000000AbCdEak"))
    assert.same({ nil, "has a wrong 18-character checksum" }, { sfid.to18("00D5E000000AbCdEAK") })
  end)

  it("org_id: widens a 15-character org id, passes an 18-character one, refuses others by prefix", function()
    assert.equal("00D5e000000AbCdEAK", sfid.org_id("00D5e000000AbCd"))
    assert.equal("00D5e000000AbCdEAK", sfid.org_id("00D5e000000AbCdeak"))
    assert.same({ nil, "is not an organization id (00D...)" }, { sfid.org_id("0015e000000AbCd") })
    -- the prefix is case-sensitive
    assert.same({ nil, "is not an organization id (00D...)" }, { sfid.org_id("00d5e000000AbCd") })
  end)

  it("org_id: passes to18's refusal through unchanged", function()
    assert.same({ nil, "must be a string" }, { sfid.org_id(nil) })
    assert.same({ nil, "must be a 15- or 18-character Salesforce id" }, { sfid.org_id("00D") })
    assert.same({ nil, "has a wrong 18-character checksum" }, { sfid.org_id("00D5e000000AbCdAAA") })
  end)
end)
