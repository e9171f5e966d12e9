-- A Mastodon tenant end to end: an org onboarded through the real web, worker
-- and sandbox, whose tenant hooks choose Mastodon and follow one hashtag and
-- one account; social.tenant, run inline, stores both feeds' posts in its tweet
-- table against the sandbox's Mastodon (the tag timeline, then accounts/lookup
-- and the account's statuses), and a second run adds nothing. Redis dbs 23
-- (app) and 24 (sandbox); database mc_mastodon.
local stack = require "support.stack"
local proc = require "support.process"
local json = require "mc.json"
local host = require "mc.host"
local file = require "mc.file"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local O = orgs.synthetic(3)
local ORG = { org_id = O.org_id, org_name = O.name, admin_email = O.users[1].username }
local SCHEMA = "salesforce" .. ORG.org_id:lower()

-- the tenant's own hooks: Mastodon; its first account follows #<handle>, the
-- second an account elsewhere
local HOOKS = [[
return {
  social_provider = function() return "mastodon" end,
  social_accounts = function(tenant, accounts)
    local out = default.social_accounts(tenant, accounts)
    table.sort(out, function(a, b) return a.sfid < b.sfid end)
    out[1].handle = "#" .. out[1].handle
    out[2].handle = "@alice@fosstodon.org"
    return { out[1], out[2] }
  end,
}
]]

describe("a Mastodon tenant end to end", function()
  local s, dir, cleanup

  setup(function()
    dir, cleanup = proc.tmpdir()
    proc.write(dir .. "/default.lua", assert(file.read(host.root .. "/scripts/tenants/default.lua")))
    proc.write(dir .. "/" .. ORG.org_id .. ".lua", HOOKS)
    s = stack.start({ name = "mastodon", app_db = 23, sandbox_db = 24, env = { TENANTS_DIR = dir } })
  end)
  teardown(function()
    if s then s:stop() end
    if cleanup then cleanup() end
  end)

  local function run()
    local e = {}
    for k, v in pairs(s.env) do e[k] = v end
    e.MASTODON_URL = s.sandbox_url .. "/mastodon"
    local r = proc.mc({ "run", "jobs:social.tenant", json.encode({ ORG.org_id }) }, { env = e })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local line = r.stdout:match("[^\n]*msg=\"social tenant run\"[^\n]*")
    assert(line, "no summary in:\n" .. r.stdout .. r.stderr)
    local out = {}
    for k, v in line:gmatch("(%w+)=(%S+)") do out[k] = tonumber(v) or v end
    return out
  end

  it("stores the posts of a followed tag and of a followed account, each once", function()
    assert.equal(202, s:post_install(ORG).status)
    local ok, state = s:wait_state(ORG.org_id, "active", 90)
    assert(ok, "org ended in " .. tostring(state) .. "\n" .. s:logs())
    local before = assert(s.pg:query("SELECT count(*)::int AS n FROM " .. SCHEMA .. ".tweet__c"))[1].n
    local summary = run()
    assert.equal("done", summary.status)
    assert(summary.inserted > 20, "inserted " .. tostring(summary.inserted))
    local cursors = assert(s.pg:query([[SELECT source, since_id FROM social_cursors WHERE org_id = $1
      AND provider = 'mastodon' ORDER BY source]], ORG.org_id))
    assert.equal(2, #cursors)
    assert.equal("acct:alice@fosstodon.org", cursors[1].source)
    assert.matches("^tag:org3", cursors[2].source)
    -- the account's posts are all its own, filed under the tenant's second account
    -- (beside the one seeded row Connect synced, whose author is the org's handle)
    local alice = assert(s.pg:query("SELECT author_username__c AS a, count(*)::int AS n FROM " .. SCHEMA
      .. ".tweet__c WHERE account__c = (SELECT account__c FROM " .. SCHEMA
      .. ".tweet__c WHERE author_username__c = 'alice@fosstodon.org' LIMIT 1) AND author_username__c NOT LIKE 'org3%'"
      .. " GROUP BY 1"))
    assert.equal(1, #alice)
    assert.equal("alice@fosstodon.org", alice[1].a)
    assert(alice[1].n > 20, "alice's posts: " .. alice[1].n)
    local after = assert(s.pg:query("SELECT count(*)::int AS n FROM " .. SCHEMA .. ".tweet__c"))[1].n
    assert.equal(before + summary.inserted, after)
    -- a second run: since_id, nothing twice
    assert.equal(0, run().inserted)
  end)
end)
