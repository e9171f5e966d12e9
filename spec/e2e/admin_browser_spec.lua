-- The dashboard in headless Chromium (Debian's, never a downloaded one), driven
-- by tools/browser/admin_spec.js (playwright-core and axe-core, pinned in
-- tools/browser/package-lock.json, installed by tools/setup) against the whole
-- service (support.stack: web, worker and the sandbox; database
-- mc_admin_browser, Redis dbs 24 and 25) with tenants seeded in several states
-- and a dead job. Each of the script's checks is one test here. Screenshots of
-- the overview and a tenant page at 1280x800 land in var/screenshots/<binary>/
-- (the normal and the ASan suites may run at the same time).
-- Without chromium, node or the npm packages every test is pending, and the
-- reason is printed.
local json = require "mc.json"
local jobs = require "mc.jobs"
local host = require "mc.host"
local sfid = require "lib.sfid"
local proc = require "support.process"
local stack = require "support.stack"

local SCRIPT = host.root .. "/tools/browser/admin_spec.js"
local CHROMIUM = "/usr/bin/chromium"
local CHECKS = {
  "a wrong secret is refused", "signs in with the operator secret", "the overview refreshes itself",
  "shows tenants in several states", "filters by state and searches by name", "opens a tenant, with its history",
  "an action without its CSRF token is refused", "retry step moves the tenant on",
  "resume takes a failed tenant back to its step", "retries a dead job and it leaves the dead set",
  "is readable on a phone-sized screen",
}
for _, page in ipairs({ "sign-in", "overview", "tenants", "tenant", "jobs" }) do
  CHECKS[#CHECKS + 1] = "axe: no serious or critical violation on the " .. page .. " page"
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- Why the browser specs cannot run here, or nil.
local function missing()
  if not exists(CHROMIUM) then return CHROMIUM .. " is not installed (Debian's chromium; `make setup` installs it)" end
  if os.execute("command -v node >/dev/null 2>&1") ~= true then return "node is not installed" end
  if not exists(host.root .. "/tools/browser/node_modules/playwright-core/package.json") then
    return "tools/browser/node_modules is not installed (`make setup` runs npm ci there)"
  end
end

local function id(n) return (assert(sfid.to18(string.format("00D5e00000B%04d", n)))) end

local FIXTURE = { retry_org = id(1), retry_name = "Retry Works", failed_org = id(2),
  dead_jid = "0123456789abcdef01234567" }

local function seed(s)
  local orgs = {
    { id(1), FIXTURE.retry_name, "received", "now() + interval '1 hour'" },
    { id(2), "Globex Failed", "failed", "NULL", "received", "heroku: 503 service unavailable" },
    { id(3), "Acme Active", "active", "NULL" },
    { id(4), "Initech Waiting", "awaiting_app_oauth", "NULL" },
  }
  for _, o in ipairs(orgs) do
    assert(s.pg:query(([[INSERT INTO organizations (org_id, org_name, admin_email, state, failed_step, last_error,
      next_attempt_at, state_since) VALUES ($1, $2, $3, $4, $5, $6, %s, now() - interval '90 minutes')]]):format(o[4]),
      o[1], o[2], "admin@" .. o[1]:lower() .. ".example", o[3], o[5] or mc.null, o[6] or mc.null))
    assert(s.pg:query([[INSERT INTO onboarding_events (org_id, from_state, to_state, kind, details)
      VALUES ($1, NULL, 'received', 'request', '{}')]], o[1]))
  end
  local job = jobs.payload("onboarding.advance", { "00D5e00000B9999AAA" })
  job.jid, job.error_message, job.error_class, job.retry_count = FIXTURE.dead_jid, "spec: buried", "Lua::Error", 25
  assert(s.redis:call("ZADD", "dead", jobs.now(), json.encode(job)))
end

-- run(s) -> {name = {ok, error}}, the script's whole output
local SHOTS = host.root .. "/var/screenshots/" .. host.exe:match("[^/]+$")

local function run(s, shots)
  local r = proc.run({ "node", SCRIPT }, { env = { BASE_URL = s.web_url, ADMIN_SECRET = stack.ADMIN_TOKEN,
    FIXTURE = json.encode(FIXTURE), SCREENSHOTS = shots, CHROMIUM = CHROMIUM } })
  local results = {}
  for line in r.stdout:gmatch("[^\n]+") do
    local doc = json.decode(line)
    if type(doc) == "table" and doc.name then results[doc.name] = doc end
  end
  return results, r.stdout .. r.stderr
end

describe("the dashboard in Chromium", function()
  local why = missing()
  local results, output, s = {}, "", nil

  setup(function()
    if why then
      io.stderr:write("\nadmin_browser_spec: SKIPPED, " .. why .. "\n")
      return
    end
    s = stack.start({ name = "admin_browser", app_db = 24, sandbox_db = 25, knobs = { heroku = { async = false } } })
    seed(s)
    local shots = SHOTS
    os.execute("mkdir -p " .. proc.quote(shots))
    -- this run's, not an old one
    for _, f in ipairs({ "overview.png", "tenant.png" }) do os.remove(shots .. "/" .. f) end
    results, output = run(s, shots)
  end)

  teardown(function() if s then s:stop() end end)

  for _, name in ipairs(CHECKS) do
    it(name, function()
      if why then return pending("skipped: " .. why) end
      local res = results[name]
      assert(res, "the browser script did not report '" .. name .. "':\n" .. output)
      assert(res.ok, name .. ": " .. tostring(res.error)
        .. (res.ok and "" or ("\n--- logs ---\n" .. s:logs():sub(-4000))))
    end)
  end

  it("left screenshots of the overview and a tenant page", function()
    if why then return pending("skipped: " .. why) end
    for _, f in ipairs({ "overview.png", "tenant.png" }) do
      local data = assert(io.open(SHOTS .. "/" .. f, "rb"), f):read("a")
      assert.equal("\137PNG", data:sub(1, 4))
    end
  end)
end)
