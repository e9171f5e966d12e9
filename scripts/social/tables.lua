-- social.tables: the tenant tables social sync reads and writes, named the way
-- Heroku Connect names them (docs/external-apis.md §1.10): lower(object and field API names),
-- custom ones (…__c) carrying the package namespace "<ns>__" when FORCE_NAMESPACE
-- is set. Every identifier is checked before pg.quote_ident sees it.
--   tables.names(namespace) -> {account, handle, tweet, cols = {...}}
--   tables.inspect(conn, schema, names) -> target | nil, err   (what exists)
local pg = require "mc.pg"
local json = require "mc.json"

local _M = {}

local IDENT = "^[a-z_][a-z0-9_]*$"

function _M.valid_ident(s)
  return type(s) == "string" and #s <= 63 and s:match(IDENT) ~= nil and s:sub(1, 3) ~= "pg_"
end

function _M.valid_namespace(ns)
  return type(ns) == "string" and ns:match("^%a[%w]*$") ~= nil and #ns <= 15
end

-- custom(ns, api_name): the column or table for a custom name (…__c)
local function custom(ns, api_name)
  return ((ns and ns ~= "") and (ns .. "__" .. api_name) or api_name):lower()
end

-- The tweet columns: key -> API field. text and ext (the external id) are
-- required; the rest are written when the tenant's table has them.
_M.TWEET_FIELDS = {
  ext = "Tweet_Id__c", text = "Text__c", account = "Account__c", author = "Author_Username__c",
  posted_at = "Posted_At__c", likes = "Likes__c", retweets = "Retweets__c",
}
_M.REQUIRED = { ext = true, text = true }

function _M.names(namespace)
  if namespace ~= nil and namespace ~= "" and not _M.valid_namespace(namespace) then
    error("FORCE_NAMESPACE must be letters and digits (up to 15): " .. tostring(namespace), 2)
  end
  local cols = {}
  for key, field in pairs(_M.TWEET_FIELDS) do cols[key] = custom(namespace, field) end
  return { account = "account", handle = custom(namespace, "Twitter_Handle__c"),
    tweet = custom(namespace, "Tweet__c"), cols = cols }
end

local function columns_of(conn, schema, tbl)
  local rows, err = conn:query([[SELECT column_name, data_type, character_maximum_length AS max_len
    FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2]], schema, tbl)
  if not rows then return nil, err end
  local out = {}
  for _, r in ipairs(rows) do out[r.column_name] = r end
  return out
end

-- inspect(conn, schema, names) -> target | nil, err. target = {schema, names,
-- account_sql (the SELECT of accounts with a handle), tweet = qualified name,
-- cols = {key -> {name, max_len, type}} for the columns that exist}.
function _M.inspect(conn, schema, names)
  if not _M.valid_ident(schema) then return nil, "invalid schema name" end
  for _, n in ipairs({ names.account, names.handle, names.tweet }) do
    if not _M.valid_ident(n) then return nil, "invalid identifier " .. tostring(n) end
  end
  local acols, err = columns_of(conn, schema, names.account)
  if not acols then return nil, err end
  if not next(acols) then return nil, "no table " .. schema .. "." .. names.account end
  if not acols[names.handle] then return nil, "no column " .. names.account .. "." .. names.handle end
  local tcols; tcols, err = columns_of(conn, schema, names.tweet)
  if not tcols then return nil, err end
  if not next(tcols) then return nil, "no table " .. schema .. "." .. names.tweet end
  local target = { schema = schema, names = names, cols = {},
    tweet = pg.quote_ident(schema) .. "." .. pg.quote_ident(names.tweet) }
  for key, col in pairs(names.cols) do
    local c = tcols[col]
    if c and _M.valid_ident(col) then
      target.cols[key] = { name = col, max_len = c.max_len ~= json.null and c.max_len or nil, type = c.data_type }
    elseif _M.REQUIRED[key] then
      return nil, "no column " .. names.tweet .. "." .. col
    end
  end
  -- a unique index on the external id alone (Connect makes one for the mapping's
  -- "unique": true) lets ingest upsert in one statement
  local idx; idx, err = conn:query([[SELECT 1 FROM pg_index i JOIN pg_attribute a
      ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnatts = 1 AND i.indpred IS NULL
      AND a.attname = $2]], target.tweet, target.cols.ext.name)
  if not idx then return nil, err end
  target.unique_ext = #idx > 0
  local deleted = acols.isdeleted and " AND isdeleted IS NOT TRUE" or ""
  target.account_sql = string.format(
    "SELECT sfid, name, %s AS handle FROM %s.%s WHERE sfid IS NOT NULL AND coalesce(%s, '') <> ''%s ORDER BY sfid",
    pg.quote_ident(names.handle), pg.quote_ident(schema), pg.quote_ident(names.account),
    pg.quote_ident(names.handle), deleted)
  return target
end

-- accounts(conn, target) -> {{sfid, name, handle}...} | nil, err
function _M.accounts(conn, target)
  local rows, err = conn:query(target.account_sql)
  if not rows then return nil, err end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = { sfid = r.sfid, name = r.name ~= json.null and r.name or nil, handle = r.handle }
  end
  return out
end

return _M
