-- clients.connect: the Heroku Connect API calls onboarding makes (docs/external-apis.md §1).
-- Discovery (hc-central) at HEROKU_CONNECT_URL (default https://hc-central.heroku.com);
-- each connection's own API at the region_url discovery returned, + /api/v3.
-- Auth: the same HEROKU_API_TOKEN as the Platform API. Every call -> result | nil,
-- err, retryable.
local config = require "config"
local api = require "lib.api"
local http = require "mc.http"

local _M = {}

-- Connect's states as multiconnect reads them (docs/external-apis.md §1.8).
_M.HEALTHY_CONNECTION = { IDLE = true, POLLING_DB_CHANGES = true }
_M.SYNCED_MAPPING = { DATA_SYNCED = true, POLLING_SF_CHANGES = true, SYNCED = true }
_M.BROKEN_MAPPING = { BAD_CONFIG = true, SYSTEM_ERROR = true, ABORTED = true, UNAUTHORIZED = true,
  INACTIVE_ORG = true, DB_UNAVAILABLE = true, BULK_LOAD_ERROR = true }
-- A connection in one of these needs someone: the org's admin (authorization),
-- or the operator (paused, iced, an error of Connect's).
_M.UNAUTHORIZED_CONNECTION = { NEED_AUTHENTICATION = true, UNAUTHORIZED = true }
_M.PAUSED_CONNECTION = { PAUSED = true, SYSTEM_ON_ICE = true, ICED = true }
_M.BROKEN_CONNECTION = { SYSTEM_ERROR = true, DB_UNAVAILABLE = true, TOO_MANY_ROWS = true,
  HEROKU_UNAUTH = true, INACTIVE_ORG = true }

local function call(method, url, body, ok, timeout)
  return api.call{
    service = "connect", method = method, url = url, json = body, ok = ok, timeout = timeout,
    headers = { Authorization = "Bearer " .. config.need("HEROKU_API_TOKEN"), ["Content-Type"] = "application/json" },
  }
end

local function central(path)
  return config.get("HEROKU_CONNECT_URL"):gsub("/+$", "") .. path
end

local function regional(region_url, path)
  return region_url:gsub("/+$", "") .. "/api/v3" .. path
end

-- link(app) -> true | false (no Connect add-on visible yet) | nil, err, retryable:
-- puts our token's user on the access list of the app's Connect add-ons.
function _M.link(app)
  local res, err, retry = call("POST", central("/auth/" .. http.escape(app)), nil, { [404] = true })
  if not res then return nil, err, retry end
  return res.status ~= 404
end

-- find(app, addon_name) -> summary {id, region_url, ...} | false (not listed yet) | nil, err, retryable.
-- The connection id is not the add-on id (docs/external-apis.md §1.9): look it up by add-on name.
function _M.find(app, addon_name)
  local query = http.encode_query({ app = app, resource_name = addon_name })
  local res, err, retry = call("GET", central("/connections?" .. query))
  if not res then return nil, err, retry end
  local doc = res:json()
  if type(doc) ~= "table" or type(doc.results) ~= "table" then
    return nil, "connect: unexpected connections list", true
  end
  for _, c in ipairs(doc.results) do
    if c.resource_name == addon_name and type(c.id) == "string" and type(c.region_url) == "string" then return c end
  end
  return false
end

-- get(region_url, id[, deep[, timeout]]) -> the connection (deep: with its
-- mappings) | nil, err, retryable. timeout: seconds, for a person waiting on a page.
function _M.get(region_url, id, deep, timeout)
  local path = "/connections/" .. http.escape(id) .. (deep and "?deep=true" or "")
  local res, err, retry = call("GET", regional(region_url, path), nil, nil, timeout)
  if not res then return nil, err, retry end
  local doc = res:json()
  if type(doc) ~= "table" then return nil, "connect: unexpected connection body", true end
  return doc
end

-- configure(...) -> true once Connect accepted the change (202; a 200 is a "not yet",
-- docs/external-apis.md §1.4)
function _M.configure(region_url, id, schema_name, db_key)
  local res, err, retry = call("PATCH", regional(region_url, "/connections/" .. http.escape(id)),
    { schema_name = schema_name, db_key = db_key })
  if not res then return nil, err, retry end
  if res.status ~= 202 then return nil, "connect: PATCH answered " .. res.status .. ", not 202", true end
  return true
end

-- authorize_url(...) -> the URL the org's admin opens to authorize Connect
function _M.authorize_url(region_url, id, body)
  local url = regional(region_url, "/connections/" .. http.escape(id) .. "/authorize_url")
  local res, err, retry = call("POST", url, body)
  if not res then return nil, err, retry end
  local doc = res:json()
  if type(doc) ~= "table" or type(doc.redirect) ~= "string" then
    return nil, "connect: authorize_url gave no redirect", true
  end
  return doc.redirect
end

function _M.import(region_url, id, doc)
  local url = regional(region_url, "/connections/" .. http.escape(id) .. "/actions/import")
  local res, err, retry = call("POST", url, doc)
  if not res then return nil, err, retry end
  return true
end

-- pause(region_url, id) -> true | nil, err, retryable: the sync stops, the
-- connection and its mappings stay (offboarding). A connection already gone
-- (404) has nothing left to pause.
function _M.pause(region_url, id)
  local res, err, retry = call("POST", regional(region_url, "/connections/" .. http.escape(id) .. "/actions/pause"),
    nil, { [404] = true })
  if not res then return nil, err, retry end
  return true
end

return _M
