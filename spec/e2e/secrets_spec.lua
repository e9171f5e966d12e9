-- Secrets end to end (issue 18, "Secrets"): two orgs onboarded by the whole
-- service (support.stack), then their Salesforce sessions looked for where they
-- must not be. The tokens are sealed (AES-256-GCM, spec/unit/crypto_spec.lua has
-- the known-answer vectors) with the org and the column as associated data, so
-- a token moved onto another org's row does not open; and neither the plaintext
-- tokens (as the sandbox's Salesforce issued them) nor the sealed ones appear in
-- the web or worker logs, the dashboard's pages, or the console's output.
-- Redis dbs 30 (app) and 31 (sandbox); database mc_secrets.
local stack = require "support.stack"
local proc = require "support.process"
local http = require "mc.http"
local host = require "mc.host"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local N = { 61, 62 }

describe("secrets", function()
  local s, list

  setup(function()
    s = stack.start({ name = "secrets", app_db = 30, sandbox_db = 31 })
    list = {}
    for _, n in ipairs(N) do
      local o = orgs.synthetic(n)
      list[#list + 1] = o.org_id
      assert.equal(202, s:post_install({ org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username })
        .status)
    end
    for _, id in ipairs(list) do assert(s:wait_state(id, "active", 90), s:logs()) end
  end)
  teardown(function() if s then s:stop() end end)

  local function rows()
    return assert(s.pg:query("SELECT org_id, access_token, refresh_token FROM organizations ORDER BY org_id"))
  end

  -- every secret of the two orgs: sealed as stored, and in the clear as the
  -- sandbox's Salesforce issued them (its state names each token by its value)
  local function secrets()
    local out = {}
    for _, r in ipairs(rows()) do
      out[#out + 1] = r.access_token
      out[#out + 1] = r.refresh_token
    end
    local mine = {}
    for _, id in ipairs(list) do mine[id] = true end
    for key, v in pairs(s:sandbox_state()) do
      local kind, token = key:match("^sandbox:salesforce:(%a+):(.+)$")
      if (kind == "token" or kind == "refresh") and type(v) == "table" and mine[v.org_id] then
        out[#out + 1] = token
      end
    end
    return out
  end

  local function leaks(text, where)
    local found = {}
    for _, secret in ipairs(secrets()) do
      if #secret >= 16 and text:find(secret, 1, true) then found[#found + 1] = where .. ": " .. secret:sub(1, 12) end
    end
    return found
  end

  it("knows the secrets it looks for: each org's two sealed tokens and the sandbox's plaintext ones", function()
    local all = secrets()
    assert.truthy(#all >= 6, "found " .. #all)
    for _, r in ipairs(rows()) do assert.matches("^v1%.k1%.", r.access_token) end
  end)

  it("opens no token moved onto another org's row (the org is sealed in with it)", function()
    local function status()
      local r = proc.mc({ "keys", "status", "--json" }, { env = s.env })
      local doc = require("mc.json").decode(r.stdout:match("{.*}") or "")
      assert(doc, r.stdout .. r.stderr)
      assert.equal(doc.unreadable == 0 and 0 or 1, r.code, r.stderr) -- it exits 1 on an unreadable token
      return doc
    end
    local before = status()
    assert.equal(0, before.unreadable, require("mc.json").encode(before))
    local a, b = rows()[1], rows()[2]
    assert(s.pg:query("UPDATE organizations SET access_token = $1 WHERE org_id = $2", a.access_token, b.org_id))
    finally(function()
      assert(s.pg:query("UPDATE organizations SET access_token = $1 WHERE org_id = $2", b.access_token, b.org_id))
    end)
    local after = status()
    print(string.format("\nsecrets: a token moved to another org's row: %d of %d tokens unreadable",
      after.unreadable, after.total))
    assert.equal(1, after.unreadable)
    -- swapping the column (access -> refresh) of one org fails too
    assert(s.pg:query("UPDATE organizations SET access_token = $1 WHERE org_id = $2", b.refresh_token, b.org_id))
    assert.equal(1, status().unreadable)
  end)

  it("shows no token in the logs, the dashboard's pages or the console's output", function()
    local found = {}
    local function check(text, where)
      for _, f in ipairs(leaks(text, where)) do found[#found + 1] = f end
    end
    check(s.web:log(), "web log")
    check(s.worker:log(), "worker log")
    -- the dashboard, signed in, every page that shows a tenant
    local signin = assert(http.post(s.web_url .. "/admin/signin", { form = { secret = stack.ADMIN_TOKEN } }))
    local set = signin.headers["set-cookie"]
    if type(set) == "table" then set = table.concat(set, "\n") end
    local cookie = assert(tostring(set):match("(mc_admin=[^;]+)"), signin.status .. " " .. signin.body)
    local pages = { "/admin", "/admin/overview.json", "/admin/tenants", "/admin/jobs" }
    for _, id in ipairs(list) do pages[#pages + 1] = "/admin/tenants/" .. id end
    for _, path in ipairs(pages) do
      local res = assert(http.get(s.web_url .. path, { headers = { Cookie = cookie } }))
      assert.equal(200, res.status, path)
      check(res.body, path)
    end
    -- the operator API's view of each org
    for _, id in ipairs(list) do
      local _, res = s:get_org(id)
      check(res.body, "GET /organizations/" .. id)
    end
    -- the console, as an operator uses it by default
    local chunk = table.concat({ "orgs()", 'org("' .. list[1] .. '")', 'sql("SELECT * FROM organizations")' }, "\n")
    local r = proc.mc({ "console" }, { env = s.env, stdin = chunk .. "\n" })
    assert.equal(0, r.code, r.stderr)
    assert.matches(list[1], r.stdout, 1, true) -- it did show the org
    assert.matches('access_token = [=[[FILTERED]]=]', r.stdout, 1, true) -- and the rows, their tokens filtered
    check(r.stdout .. r.stderr, "console")
    print(string.format("secrets: %d secrets looked for in 2 logs, %d pages, the API and the console: found %d",
      #secrets(), #pages, #found))
    assert.same({}, found)
  end)
end)
