-- clients.heroku: the Heroku Platform API calls onboarding makes (apis.md §2):
-- the org's Heroku Connect add-on on our app. Config: HEROKU_API_URL (default
-- https://api.heroku.com), HEROKU_API_TOKEN, HEROKU_APP_NAME, HEROKU_CONNECT_PLAN
-- (default herokuconnect:demo). Every call -> result | nil, err, retryable.
local env = require "mc.env"
local api = require "lib.api"
local http = require "mc.http"

local _M = {}

local ACCEPT = "application/vnd.heroku+json; version=3"

function _M.app() return env.str("HEROKU_APP_NAME") end

local function call(method, path, body, ok)
  local base = env.str("HEROKU_API_URL", "https://api.heroku.com"):gsub("/+$", "")
  return api.call{
    service = "heroku", method = method, url = base .. path, json = body, ok = ok,
    headers = { Accept = ACCEPT, Authorization = "Bearer " .. env.str("HEROKU_API_TOKEN") },
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
    plan = env.str("HEROKU_CONNECT_PLAN", "herokuconnect:demo"),
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
