-- sandbox.store: the sandbox's state in Redis, and its knobs.
--   knobs: one JSON document at sandbox:config, {service = {knob = value}},
--   set by POST /__sandbox/config (or SANDBOX_CONFIG at start) and read per request.
local redis = require "mc.redis"
local json = require "mc.json"

local _M = {}

_M.PREFIX = "sandbox:"

local conn
function _M.redis()
  if conn then return conn end
  local url = os.getenv("SANDBOX_REDIS_URL")
  local c, err = redis.connect(url ~= "" and url or nil)
  if not c then error("sandbox: redis: " .. err, 0) end
  conn = c
  return c
end

-- call(cmd, ...) -> reply; a Redis failure is the sandbox's own fault: raise (500)
function _M.call(...)
  local res, err = _M.redis():call(...)
  if res == nil then error("sandbox: redis: " .. tostring(err), 2) end
  return res
end

function _M.key(...)
  return _M.PREFIX .. table.concat({ ... }, ":")
end

-- The whole knob document, as Redis has it now.
local function stored_config()
  local raw = _M.call("GET", _M.key("config"))
  if raw == mc.null then return {} end
  return json.decode(raw) or {}
end

-- A request reads the knobs once: pin() keeps the document for the running
-- coroutine (the thread's own, or a request's) until what it returns is closed,
-- so the dozens of knob reads one request makes are not a Redis round trip and a
-- JSON decode each. A change (POST /__sandbox/config) shows from the next request.
local pinned = setmetatable({}, { __mode = "k" })

function _M.pin()
  local co = coroutine.running()
  local outer = pinned[co]
  pinned[co] = stored_config()
  return setmetatable({}, { __close = function() pinned[co] = outer end })
end

-- repin(): the running coroutine's pinned document, read again
function _M.repin()
  local co = coroutine.running()
  if pinned[co] then pinned[co] = stored_config() end
end

-- The whole knob document: the request's, when pinned.
function _M.config()
  return pinned[coroutine.running()] or stored_config()
end

-- knob(service, name, default)
function _M.knob(service, name, default)
  local c = _M.config()[service]
  if type(c) ~= "table" or c[name] == nil then return default end
  return c[name]
end

-- merge(doc): merges {service = {knob = value}} into the knobs (mc.null removes one)
function _M.merge(doc)
  local c = stored_config() -- not a pinned copy: another request may have changed it since
  for service, knobs in pairs(doc) do
    if type(knobs) ~= "table" then return nil, "config." .. tostring(service) .. " must be an object" end
    c[service] = c[service] or {}
    for k, v in pairs(knobs) do
      if v == mc.null then v = nil end
      c[service][k] = v
    end
  end
  _M.call("SET", _M.key("config"), json.encode(c))
  local co = coroutine.running()
  if pinned[co] then pinned[co] = c end
  return c
end

-- reset(): forget every service's state and every knob
function _M.reset()
  local r = _M.redis()
  local cursor = "0"
  repeat
    local res = assert(r:call("SCAN", cursor, "MATCH", _M.PREFIX .. "*", "COUNT", 500))
    cursor = res[1]
    if #res[2] > 0 then assert(r:call("DEL", table.unpack(res[2]))) end
  until cursor == "0"
end

-- A random (version 4) UUID, as Heroku's ids are.
function _M.uuid()
  local crypto = require "mc.crypto"
  local b = { crypto.random(16):byte(1, 16) }
  b[7] = (b[7] & 0x0f) | 0x40
  b[9] = (b[9] & 0x3f) | 0x80
  local h = string.format(string.rep("%02x", 16), table.unpack(b))
  return h:sub(1, 8) .. "-" .. h:sub(9, 12) .. "-" .. h:sub(13, 16) .. "-" .. h:sub(17, 20) .. "-" .. h:sub(21)
end

function _M.iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t or os.time()))
end

return _M
