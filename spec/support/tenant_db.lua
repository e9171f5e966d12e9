-- support.tenant_db: a private database for one spec file on the test Postgres,
-- migrated by the real `multiconnect migrate`, and the tenant schemas Heroku
-- Connect makes in it (docs/external-apis.md §1.10: lower-cased names, Connect's system columns,
-- an hcu_ unique index for a mapping's "unique": true).
--   local tdb = tenant_db.create("mc_spec_ingest")   -- tdb.url, tdb.conn
--   local schema = tdb:tenant("salesforce00d...", { unique = false, drop = { "likes__c" } })
--   tdb:org("00D...", { state = "active", schema_name = schema })
--   tdb:drop()
local pg = require "mc.pg"
local proc = require "support.process"

local _M = {}

local Db = {}
Db.__index = Db

function _M.create(name)
  local admin = assert(pg.connect(os.getenv("DATABASE_URL")))
  admin:query("DROP DATABASE IF EXISTS " .. pg.quote_ident(name) .. " WITH (FORCE)")
  assert(admin:query("CREATE DATABASE " .. pg.quote_ident(name)))
  local base, query = os.getenv("DATABASE_URL"):match("^([^?]*)(.*)$")
  local url = base:gsub("/[^/]*$", "/" .. name) .. query
  local r = proc.mc({ "migrate" }, { env = { DATABASE_URL = url } })
  assert(r.code == 0, "migrate: " .. tostring(r.stdout) .. tostring(r.stderr))
  return setmetatable({ name = name, admin = admin, url = url, conn = assert(pg.connect(url)) }, Db)
end

local SYSTEM = "id serial PRIMARY KEY, sfid varchar(18), systemmodstamp timestamp, isdeleted boolean, "
  .. "createddate timestamp, _hc_lastop varchar(32), _hc_err text"

-- tenant(schema, opts) -> schema: account and tweet tables as Connect makes them.
-- opts: ns (package namespace), unique (hcu_ index on the tweet id, default true),
-- drop = {column...} (columns the tenant's mapping left out), text_len (text__c as
-- varchar(n) instead of text), no_tweets (no tweet table)
function Db:tenant(schema, opts)
  opts = opts or {}
  local p = (opts.ns and (opts.ns .. "__") or "")
  local q = pg.quote_ident(schema)
  local cols = {
    { p .. "tweet_id__c", "varchar(255)" },
    { p .. "text__c", opts.text_len and ("varchar(" .. opts.text_len .. ")") or "text" },
    { p .. "account__c", "varchar(18)" }, { p .. "author_username__c", "varchar(255)" },
    { p .. "posted_at__c", "timestamp" }, { p .. "likes__c", "double precision" },
    { p .. "retweets__c", "double precision" },
  }
  local dropped = {}
  for _, c in ipairs(opts.drop or {}) do dropped[c] = true end
  local defs = {}
  for _, c in ipairs(cols) do
    if not dropped[c[1]] then defs[#defs + 1] = pg.quote_ident(c[1]) .. " " .. c[2] end
  end
  local tweet = q .. "." .. pg.quote_ident(p .. "tweet__c")
  local sql = { "DROP SCHEMA IF EXISTS " .. q .. " CASCADE", "CREATE SCHEMA " .. q,
    "CREATE TABLE " .. q .. ".account (" .. SYSTEM .. ", name varchar(255), "
      .. pg.quote_ident(p .. "twitter_handle__c")
      .. " varchar(255))" }
  if not opts.no_tweets then
    sql[#sql + 1] = "CREATE TABLE " .. tweet .. " (" .. SYSTEM .. ", " .. table.concat(defs, ", ") .. ")"
    if opts.unique ~= false then
      sql[#sql + 1] = "CREATE UNIQUE INDEX " .. pg.quote_ident("hcu_idx_" .. p .. "tweet__c_" .. p .. "tweet_id__c")
        .. " ON " .. tweet .. " (" .. pg.quote_ident(p .. "tweet_id__c") .. ")"
    end
  end
  for _, s in ipairs(sql) do assert(self.conn:exec(s)) end
  return schema
end

-- org(org_id, fields) -> the organizations row's fields (an active tenant by default)
function Db:org(org_id, fields)
  local f = { org_id = org_id, org_name = "Acme", admin_email = "admin@acme.example", state = "active" }
  for k, v in pairs(fields or {}) do f[k] = v end
  assert(self.conn:query([[INSERT INTO organizations (org_id, org_name, admin_email, state, schema_name)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id) DO UPDATE SET state = EXCLUDED.state,
    schema_name = EXCLUDED.schema_name]], f.org_id, f.org_name, f.admin_email, f.state, f.schema_name))
  return f
end

function Db:drop()
  self.conn:close()
  self.admin:query("DROP DATABASE IF EXISTS " .. pg.quote_ident(self.name) .. " WITH (FORCE)")
  self.admin:close()
end

return _M
