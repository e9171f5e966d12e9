-- sandbox.heroku: the Heroku Platform API's add-on endpoints (docs/external-apis.md §2).
--   POST   /apps/{app}/addons          201 provisioned, or 202 provisioning (knob async);
--                                      `name` is globally unique (422 "Name is already
--                                      taken", whichever app holds it); `attachment.name`
--                                      is kept for GET /__sandbox/heroku/addons
--   GET    /apps/{app}/addons          200
--   GET    /apps/{app}/addons/{id}     by id or name; provisioning -> provisioned after
--                                      knob provision_delay seconds
--   DELETE /apps/{app}/addons/{id}     by id or name: 200, state deprovisioned; frees the name
--   GET    /account/rate-limits        {"remaining": n}, not counted
-- Every call needs Accept: application/vnd.heroku+json; version=3 (406) and a
-- bearer token (401; knob token pins the one accepted); each counted call spends
-- one of the token's RateLimit-Remaining (knob rate_limit, default 4500, refilled
-- knob rate_refill a minute, default 75, as Heroku's bucket is), 429 at 0.
-- Errors are {"id", "message", "url"}. Knobs also: latency, fail_next, fail_rate.
local json = require "mc.json"
local host = require "mc.host"
local store = require "sandbox.store"
local faults = require "sandbox.faults"

local _M = {}

-- A token's bucket, as Heroku keeps it: `rate_limit` tokens at most, refilled at
-- `rate_refill` a minute, a counted call spending one. Atomic: the sandbox's
-- threads share it. -> {1 (allowed) | 0 (429), the whole tokens left}
local BUCKET = [[
local limit, refill, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(v[1]) or limit, tonumber(v[2]) or now
tokens = math.min(limit, tokens + math.max(0, now - at) * refill / 60)
local allowed = 1
if ARGV[4] == '1' then
  if tokens < 1 then allowed = 0 else tokens = tokens - 1 end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', ARGV[3])
return { allowed, math.floor(tokens) }
]]

local ACCEPT = "application/vnd.heroku+json; version=3"
local APP_NAME = "^[a-z][a-z0-9%-]+$"
local ADDON_NAME = "^[%a][%w_%-]+$"
local ATTACHMENT_NAME = "^[%a][%w_]*$"

-- every live add-on's name -> its id, across apps: names are globally unique
local function names_key() return store.key("heroku", "addon_names") end

local function failure(status, id, message, headers)
  local h = { ["Content-Type"] = "application/json", ["Request-Id"] = store.uuid() }
  for k, v in pairs(headers or {}) do h[k] = v end
  return status, { id = id, message = message, url = "https://devcenter.heroku.com/articles/platform-api-reference" }, h
end

local FAULT_IDS = { [500] = "internal_server_error", [502] = "bad_gateway", [503] = "service_unavailable" }

local function fault(status)
  return failure(status, FAULT_IDS[status] or "error", "The sandbox injected this failure.")
end

-- Checks Accept, the token and the rate limit -> nil, headers | status, body, headers
local function guard(req, counted)
  if req.headers["accept"] ~= ACCEPT then
    return failure(406, "not_acceptable",
      "Please specify a version along with Heroku's API MIME type. For example, `Accept: " .. ACCEPT .. "`.")
  end
  local token = (req.headers["authorization"] or ""):match("^Bearer%s+(%S+)$")
  local pinned = store.knob("heroku", "token")
  if not token or (pinned and token ~= pinned) then
    return failure(401, "unauthorized", "Invalid credentials provided.")
  end
  local res, err = store.redis():eval(BUCKET, { store.key("heroku", "ratebucket", token) },
    { tonumber(store.knob("heroku", "rate_limit", 4500)), tonumber(store.knob("heroku", "rate_refill", 75)),
      string.format("%.3f", host.time()), counted and 1 or 0 })
  if res == nil then error("sandbox: redis: " .. tostring(err), 0) end
  local spent, remaining = res[1], res[2]
  if spent == 0 then
    return failure(429, "rate_limit", "Your account reached the API rate limit", { ["RateLimit-Remaining"] = "0" })
  end
  return nil, { ["Content-Type"] = "application/json", ["Request-Id"] = store.uuid(),
                ["RateLimit-Remaining"] = tostring(remaining) }
end

-- ---- add-ons -----------------------------------------------------------------

-- The add-on of app (any app: nil) named by id or name, its state brought up to
-- date; or nil.
local function load_addon(app, id_or_name)
  local raw = store.call("GET", store.key("heroku", "addon", id_or_name))
  if raw == mc.null then
    local id = store.call("HGET", names_key(), id_or_name)
    if id == mc.null then return nil end
    raw = store.call("GET", store.key("heroku", "addon", id))
    if raw == mc.null then return nil end
  end
  local addon = json.decode(raw)
  if app and addon.app.name ~= app then return nil end
  if addon.state == "provisioning" and host.time() >= addon.sandbox_ready_at then
    addon.state = "provisioned"
    addon.updated_at = store.iso8601()
    store.call("SET", store.key("heroku", "addon", addon.id), json.encode(addon))
  end
  return addon
end

local ARRAYS = { actions = true, config_vars = true } -- [] must stay [] through storage

local function public(addon)
  local out = {}
  for k, v in pairs(addon) do
    if ARRAYS[k] then out[k] = json.array(v)
    elseif not k:find("^sandbox_") then out[k] = v end
  end
  return out
end

local function bad_params(message)
  return failure(422, "invalid_params", message)
end

local function check_create(app, body)
  if not app:match(APP_NAME) then return nil, "Couldn't find that app." end
  if type(body) ~= "table" then return nil, "body must be a JSON object" end
  if type(body.plan) ~= "string" or body.plan == "" then return nil, "plan is required" end
  if body.name ~= nil and (type(body.name) ~= "string" or not body.name:match(ADDON_NAME)) then
    return nil, "name is invalid"
  end
  if body.attachment ~= nil and (type(body.attachment) ~= "table" or (body.attachment.name ~= nil
      and (type(body.attachment.name) ~= "string" or not body.attachment.name:match(ATTACHMENT_NAME)))) then
    return nil, "attachment name is invalid"
  end
  if body.config ~= nil and type(body.config) ~= "table" then return nil, "config must be an object" end
  for k, v in pairs(body.config or {}) do
    if type(k) ~= "string" or not k:match("^[%w_]+$") or type(v) ~= "string" then
      return nil, "config values must be strings under word keys"
    end
  end
  return true
end

local function create(req, headers)
  local app = req.params.app
  if not app:match(APP_NAME) then return failure(404, "not_found", "Couldn't find that app.") end
  local body = req.json()
  local ok, err = check_create(app, body)
  if not ok then return bad_params(err) end
  local service, plan = body.plan:match("^([%w%-]+):([%w%-]+)$")
  if not service then service, plan = body.plan, "default" end
  local name = body.name or (service .. "-" .. store.uuid():sub(1, 8))
  local id = store.uuid()
  -- claimed atomically, so two concurrent POSTs of one name make one add-on
  if store.call("HSETNX", names_key(), name, id) ~= 1 then
    return failure(422, "invalid_params", "Name is already taken")
  end
  local async = store.knob("heroku", "async", true)
  local now = host.time()
  local attachment = body.attachment and body.attachment.name or service:upper():gsub("%-", "_")
  local addon = {
    id = id, name = name, state = async and "provisioning" or "provisioned",
    addon_service = { id = store.uuid(), name = service },
    plan = { id = store.uuid(), name = service .. ":" .. plan },
    app = { id = store.uuid(), name = app },
    billing_entity = { id = store.uuid(), name = app, type = "app" },
    billed_price = { cents = 0, contract = false, unit = "month" },
    config_vars = {}, actions = {},
    provider_id = store.uuid():sub(1, 8), web_url = "https://addons-sso.heroku.com/apps/" .. app .. "/addons/" .. id,
    created_at = store.iso8601(now), updated_at = store.iso8601(now),
    sandbox_ready_at = now + tonumber(store.knob("heroku", "provision_delay", 2)),
    sandbox_config = body.config or {}, sandbox_attachment = attachment,
  }
  store.call("SET", store.key("heroku", "addon", id), json.encode(addon))
  store.call("RPUSH", store.key("heroku", "app", app, "addons"), id)
  return async and 202 or 201, public(addon), headers
end

local function list(req, headers)
  local out = {}
  for _, id in ipairs(store.call("LRANGE", store.key("heroku", "app", req.params.app, "addons"), 0, -1)) do
    local addon = load_addon(req.params.app, id)
    if addon then out[#out + 1] = public(addon) end
  end
  return 200, json.array(out), headers
end

local function show(req, headers)
  local addon = load_addon(req.params.app, req.params.id)
  if not addon then return failure(404, "not_found", "Couldn't find that add-on.") end
  return 200, public(addon), headers
end

local function destroy(req, headers)
  local app = req.params.app
  local addon = load_addon(app, req.params.id)
  if not addon then return failure(404, "not_found", "Couldn't find that add-on.") end
  store.call("DEL", store.key("heroku", "addon", addon.id))
  store.call("HDEL", names_key(), addon.name)
  store.call("LREM", store.key("heroku", "app", app, "addons"), 0, addon.id)
  addon.state = "deprovisioned"
  addon.updated_at = store.iso8601()
  return 200, public(addon), headers
end

-- addons(app?) -> every live add-on (of app, if given) in a compact form for tests:
-- {id, name, app, plan, state, attachment, config}, sorted by name
function _M.addons(app)
  local out = {}
  local flat = store.call("HGETALL", names_key()) -- name1, id1, name2, id2, ...
  for i = 2, #flat, 2 do
    local addon = load_addon(app, flat[i])
    if addon then
      out[#out + 1] = { id = addon.id, name = addon.name, app = addon.app.name, plan = addon.plan.name,
        state = addon.state, attachment = addon.sandbox_attachment, config = addon.sandbox_config }
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local function rate_limits(_, headers)
  return 200, { remaining = tonumber(headers["RateLimit-Remaining"]) }, headers
end

-- handler(req, headers) behind the guard: counted calls spend the rate limit.
local function guarded(handler, counted)
  return function(req)
    local status, body, headers = guard(req, counted)
    if status then return status, body, headers end
    return handler(req, body)
  end
end

function _M.mount(app, prefix)
  local function route(method, path, handler, counted)
    app:route(method, prefix .. path, faults.wrap("heroku", guarded(handler, counted ~= false), fault))
  end
  route("POST", "/apps/:app/addons", create)
  route("GET", "/apps/:app/addons", list)
  route("GET", "/apps/:app/addons/:id", show)
  route("DELETE", "/apps/:app/addons/:id", destroy)
  route("GET", "/account/rate-limits", rate_limits, false)
end

return _M
