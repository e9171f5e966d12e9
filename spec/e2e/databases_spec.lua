-- Tenants over two database servers, end to end: the test Postgres (the app's
-- DATABASE_URL) and a second server of the spec's own, named by
-- TENANT_DATABASES=SECOND_DATABASE_URL. Two orgs onboarded one after the other
-- are placed by the default `database` hook (the least loaded): each one's
-- schema, Connect's tables and its social posts on its own server, the app's
-- own tables (organizations, cursors, archives) on the primary; an uninstall
-- archives the second's schema on its server. Redis dbs 23 (app) and 24
-- (sandbox); databases mc_databases and, on the second server, mc_tenants2.
local stack = require "support.stack"
local pg_server = require "support.pg_server"
local proc = require "support.process"
local pg = require "mc.pg"
local json = require "mc.json"
local http = require "mc.http"
local host = require "mc.host"
package.path = host.root .. "/?.lua;" .. package.path
local orgs = require "sandbox.orgs"

local function org_of(i)
  local o = orgs.synthetic(i)
  return { org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username }
end
local FIRST, SECOND = org_of(1), org_of(2)

describe("tenants over two databases", function()
  local s, srv, second

  setup(function()
    srv = pg_server.start()
    local url = srv:database("mc_tenants2")
    s = stack.start({ name = "databases", app_db = 23, sandbox_db = 24,
      env = { TENANT_DATABASES = "SECOND_DATABASE_URL", SECOND_DATABASE_URL = url },
      sandbox_env = { SECOND_DATABASE_URL = url },
      knobs = { connect = { db_keys = { "DATABASE_URL", "SECOND_DATABASE_URL" } } } })
    second = assert(pg.connect(url))
  end)
  teardown(function()
    if second then second:close() end
    if s then s:stop() end
    if srv then srv:stop() end
  end)

  local function row(o)
    return assert(s.pg:query("SELECT db_key, schema_name, connection_id FROM organizations WHERE org_id = $1",
      o.org_id))[1]
  end

  local function has_schema(conn, name)
    return #assert(conn:query("SELECT 1 FROM pg_namespace WHERE nspname = $1", name)) == 1
  end

  local function onboard(o)
    assert.equal(202, s:post_install(o).status)
    local ok, state = s:wait_state(o.org_id, "active", 90)
    assert(ok, o.org_id .. " ended in " .. tostring(state) .. "\n" .. s:logs())
    return row(o)
  end

  it("places the second tenant on the second server, with everything that touches its schema", function()
    local a = onboard(FIRST)
    local b = onboard(SECOND)
    assert.same({ "DATABASE_URL", "SECOND_DATABASE_URL" }, { a.db_key, b.db_key })
    -- each schema on its own server, with its own org's accounts
    assert.is_true(has_schema(s.pg, a.schema_name))
    assert.is_false(has_schema(s.pg, b.schema_name))
    assert.is_true(has_schema(second, b.schema_name))
    assert.is_false(has_schema(second, a.schema_name))
    local names = assert(second:query("SELECT name FROM " .. b.schema_name .. ".account ORDER BY name"))
    assert(#names >= 2, "no accounts on the second server")
    for _, n in ipairs(names) do assert.matches("^Org 2", n.name) end
    -- Connect was told where: the connection's db_key
    local conn = s:sandbox_state()["sandbox:connect:conn:" .. b.connection_id]
    assert.equal("SECOND_DATABASE_URL", conn.db_key)
    -- the app's own tables stay on the primary
    assert.equal(mc.null, assert(second:query("SELECT to_regclass('public.organizations') AS t"))[1].t)
    -- social posts land in the second tenant's schema, its cursors on the primary
    local env = {}
    for k, v in pairs(s.env) do env[k] = v end
    env.X_API_URL, env.X_BEARER_TOKEN = s.sandbox_url .. "/x", "spec-x-token"
    local r = proc.mc({ "run", "jobs:social.tenant", json.encode({ SECOND.org_id }) }, { env = env })
    assert.equal(0, r.code, r.stdout .. r.stderr)
    local posts = assert(second:query("SELECT count(*)::int AS n FROM " .. b.schema_name .. ".tweet__c"))[1].n
    assert(posts > 0, "no posts on the second server:\n" .. r.stdout)
    local cursors = assert(s.pg:query("SELECT count(*)::int AS n FROM social_cursors WHERE org_id = $1", SECOND.org_id))
    assert(cursors[1].n > 0, "no cursors on the primary")
    -- an uninstall archives the schema where it is
    local body = json.encode({ org_id = SECOND.org_id })
    local res = assert(http.request({ method = "DELETE", url = s.web_url .. "/organizations/" .. SECOND.org_id,
      body = body, headers = stack.sign(body) }))
    assert.equal(202, res.status, res.body)
    assert(proc.wait_for(function()
      return #assert(s.pg:query("SELECT 1 FROM tenant_archives WHERE org_id = $1", SECOND.org_id)) == 1
        and not has_schema(second, b.schema_name)
    end, 30, "the second tenant's schema archived"), s:logs())
    local archive = assert(s.pg:query("SELECT archive_name FROM tenant_archives WHERE org_id = $1", SECOND.org_id))[1]
    assert.is_true(has_schema(second, archive.archive_name))
    assert.is_false(has_schema(s.pg, archive.archive_name))
  end)
end)
