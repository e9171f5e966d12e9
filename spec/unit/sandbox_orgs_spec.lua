-- sandbox.orgs: the fixture orgs and the synthetic ones the onboarding specs create
-- by the hundred. Ids are checked against Salesforce's case-safe 18-character rule,
-- written here again on purpose (not sandbox.orgs.id18).
local host = require "mc.host"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

-- Salesforce's rule: for each 5-character chunk of the 15-character id, a 5-bit
-- number whose bit k is set when character k of the chunk is an upper-case letter,
-- written as one character of A-Z then 0-5.
local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
local WEIGHTS = { 1, 2, 4, 8, 16 }
local function valid_id(id, prefix)
  if type(id) ~= "string" or #id ~= 18 or id:sub(1, 3) ~= prefix or not id:match("^%w+$") then return false end
  for chunk = 1, 3 do
    local n = 0
    for k = 1, 5 do
      local c = id:byte((chunk - 1) * 5 + k)
      if c >= 65 and c <= 90 then n = n + WEIGHTS[k] end
    end
    if id:sub(15 + chunk, 15 + chunk) ~= ALPHABET:sub(n + 1, n + 1) then return false end
  end
  return true
end

describe("sandbox.orgs", function()
  it("the spec's own checksum check accepts Salesforce's ids and refuses a wrong suffix", function()
    -- ids as Salesforce shows them (docs/external-apis.md, Salesforce docs)
    assert.is_true(valid_id("00D5e000000AbCdEAK", "00D"))
    assert.is_true(valid_id("001000000000001AAA", "001"))
    assert.is_false(valid_id("00D5e000000AbCdAAK", "00D"))
    assert.is_false(valid_id("00D5e000000AbCd", "00D"))
  end)

  it("synthetic(i): Org <i>, valid distinct 18-character ids, admin@org<i>.example, 2-3 accounts", function()
    local seen, counts = {}, {}
    for _, i in ipairs({ 1, 2, 3, 7, 10, 99, 100, 1234, 9998, 9999 }) do
      local o = assert(orgs.synthetic(i))
      assert.equal("Org " .. i, o.name)
      assert.equal("production", o.environment)
      assert.is_true(valid_id(o.org_id, "00D"), o.org_id)
      assert.equal(1, #o.users)
      assert.is_true(valid_id(o.users[1].user_id, "005"), o.users[1].user_id)
      assert.equal("admin@org" .. i .. ".example", o.users[1].username)
      assert.is_nil(seen[o.org_id])
      assert.is_nil(seen[o.users[1].user_id])
      seen[o.org_id], seen[o.users[1].user_id] = true, true
      assert.is_true(#o.accounts == 2 or #o.accounts == 3)
      counts[#o.accounts] = true
      local handles = {}
      for _, a in ipairs(o.accounts) do
        assert.is_string(a.name)
        assert.matches("^[%w_]+$", a.twitter_handle) -- a valid X handle: word characters, at most 15
        assert.is_true(#a.twitter_handle <= 15)
        assert.is_nil(handles[a.twitter_handle])
        handles[a.twitter_handle] = true
      end
      assert.same(o, orgs.synthetic(i)) -- deterministic
    end
    assert.is_true(counts[2] and counts[3]) -- both sizes occur
  end)

  it("synthetic(i) is nil outside 1..9999", function()
    for _, i in ipairs({ 0, -1, 10000, 1.5 }) do assert.is_nil(orgs.synthetic(i)) end
  end)

  it("by_id, by_username and by_user_id recognise synthetic orgs without storing them", function()
    local o = orgs.synthetic(4321)
    assert.same(o, orgs.by_id(o.org_id))
    assert.same(o, orgs.by_id(o.org_id:sub(1, 15)))
    local bo, bu = orgs.by_username("Admin@Org4321.example")
    assert.same(o, bo)
    assert.same(o.users[1], bu)
    bo, bu = orgs.by_user_id(o.users[1].user_id)
    assert.same(o, bo)
    assert.equal("admin@org4321.example", bu.username)
    -- near misses
    assert.is_nil(orgs.by_id(o.org_id:sub(1, 15) .. "AAA")) -- wrong suffix
    assert.is_nil(orgs.by_id(o.org_id:sub(1, 14) .. "x"))
    assert.is_nil(orgs.by_username("admin@org04321.example"))
    assert.is_nil(orgs.by_username("admin@org10000.example"))
    assert.is_nil(orgs.by_username("admin@org0.example"))
    assert.is_nil(orgs.by_username("root@org1.example"))
    assert.is_nil(orgs.by_user_id(o.org_id))
  end)

  it("keeps the fixture orgs, production by default, and one sandbox org", function()
    local acme = orgs.by_id("00D5e000000AbCdEAK")
    assert.equal("Acme", acme.name)
    assert.equal("production", acme.environment)
    assert.equal(acme, orgs.all()[1])
    local umbrella, user = orgs.by_username("admin@umbrella.example.sandbox")
    assert.equal("sandbox", umbrella.environment)
    assert.is_true(valid_id(umbrella.org_id, "00D"))
    assert.is_true(valid_id(user.user_id, "005"))
    for _, f in ipairs(orgs.all()) do
      assert.is_true(valid_id(f.org_id, "00D"), f.org_id)
      for _, u in ipairs(f.users) do assert.is_true(valid_id(u.user_id, "005"), u.user_id) end
      assert.equal(f, orgs.by_id(f.org_id)) -- no synthetic id pattern shadows a fixture one
    end
  end)
end)
