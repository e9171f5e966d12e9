-- clients.heroku: the Heroku Platform API calls onboarding makes (docs/external-apis.md §2):
-- the org's Heroku Connect add-on on our app. Config: HEROKU_API_URL (default
-- https://api.heroku.com), HEROKU_API_TOKEN, HEROKU_APP_NAME, HEROKU_CONNECT_PLAN
-- (default herokuconnect:demo). Every call -> result | nil, err, retryable.
local config = require "config"
local api = require "lib.api"
local http = require "mc.http"

local _M = {}

local ACCEPT = "application/vnd.heroku+json; version=3"

function _M.app() return config.need("HEROKU_APP_NAME") end

-- addon_name(org_id): the add-on's name is ours and derived from the org id, so
-- a step that dies between creating the add-on and saving its id finds it
-- again by name, and an offboarding deletes it even if its name was never saved.
function _M.addon_name(org_id)
  return _M.app() .. "-hc-" .. org_id:lower()
end

local function call(method, path, body, ok)
  local base = config.get("HEROKU_API_URL"):gsub("/+$", "")
  return api.call{
    service = "heroku", method = method, url = base .. path, json = body, ok = ok,
    headers = { Accept = ACCEPT, Authorization = "Bearer " .. config.need("HEROKU_API_TOKEN") },
  }
end

local function addon_path(id_or_name)
  return "/apps/" .. http.escape(_M.app()) .. "/addons" .. (id_or_name and ("/" .. http.escape(id_or_name)) or "")
end

-- get_addon(id_or_name) -> addon | false (no such add-on) | nil, err, retryable
function _M.get_addon(id_or_name)
  local res, err, retry = call("GET", addon_path(id_or_name), nil, { [404] = true })
  if not res then return nil, err, retry end
  if res.status == 404 then return false end
  return res:json()
end

-- create_addon(name, attachment) -> addon | nil, err, retryable. The add-on's name
-- is ours and globally unique, so creating is idempotent: a name already taken by
-- an earlier attempt (whose answer was lost) is looked up instead.
function _M.create_addon(name, attachment)
  local existing, gerr, gretry = _M.get_addon(name)
  if existing == nil then return nil, gerr, gretry end
  if existing then return existing end
  local res, err, retry, raw = call("POST", addon_path(), {
    plan = config.get("HEROKU_CONNECT_PLAN"),
    name = name, attachment = { name = attachment },
  })
  if res then return res:json() end
  if raw and raw.status == 422 and err:find("already taken", 1, true) then
    existing, gerr, gretry = _M.get_addon(name)
    if existing then return existing end
    return nil, gerr or ("heroku: add-on name " .. name .. " is taken by another app"), gretry or false
  end
  return nil, err, retry
end

-- delete_addon(id_or_name) -> true (gone, or was never there) | nil, err, retryable
function _M.delete_addon(id_or_name)
  local res, err, retry = call("DELETE", addon_path(id_or_name), nil, { [404] = true })
  if not res then return nil, err, retry end
  return true
end

return _M
