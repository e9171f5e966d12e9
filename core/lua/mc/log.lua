-- mc.log: one logfmt line per event on stdout, Heroku style:
--   at=info msg="tenant onboarded" org_id=00D... step=active
-- Levels debug < info < warn < error; LOG_LEVEL (default info) sets the floor.
-- Values under secret-looking keys print as [FILTERED]; URL passwords and bearer
-- tokens inside any value are masked (mc.redact).
local redact = require "mc.redact"
local json = require "mc.json"
local log_escape = require("mc.host").log_escape

local _M = {}

local LEVELS = { debug = 10, info = 20, warn = 30, error = 40 }
local PRIORITY_KEYS = { at = true, msg = true }

local function floor_from_env()
  local name = string.lower(os.getenv("LOG_LEVEL") or "info")
  local n = LEVELS[name]
  if not n then
    error(string.format("LOG_LEVEL: expected one of debug, info, warn, error, got %q", name), 0)
  end
  return n
end

local floor = floor_from_env()

-- logfmt value: bare when it is a plain token, quoted with escapes otherwise.
local function format_value(v)
  local t = type(v)
  if t == "number" or t == "boolean" then return tostring(v) end
  if v == json.null then return "null" end
  if t == "table" then v = json.encode(v) or tostring(v) end
  local s = redact.text(tostring(v))
  if s ~= "" and not s:find('[%s"=\\%c]') then return s end
  return '"' .. log_escape(s) .. '"' -- the host's, which the C side's lines use too
end

-- Builds the line: at, msg, then the fields in key order (stable, diffable).
function _M.format(level, msg, fields)
  local parts = { "at=" .. level, "msg=" .. format_value(msg == nil and "" or msg) }
  if fields then
    local keys = {}
    for k in pairs(fields) do
      if not PRIORITY_KEYS[k] then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local name = tostring(k):gsub("[^%w_.%-]", "_")
      local v = redact.is_secret_key(name) and redact.FILTERED or format_value(fields[k])
      parts[#parts + 1] = name .. "=" .. v
    end
  end
  return table.concat(parts, " ")
end

local function emit(level, msg, fields)
  if LEVELS[level] < floor then return end
  io.stdout:write(_M.format(level, msg, fields), "\n")
end

function _M.enabled(level)
  local n = LEVELS[level] or error("unknown log level: " .. tostring(level), 2)
  return n >= floor
end

for level in pairs(LEVELS) do
  _M[level] = function(msg, fields) return emit(level, msg, fields) end
end

-- log.with{request_id = ...} -> a logger whose lines carry these fields too.
function _M.with(context)
  local bound = {}
  for level in pairs(LEVELS) do
    bound[level] = function(msg, fields)
      local merged = {}
      for k, v in pairs(context) do merged[k] = v end
      if fields then for k, v in pairs(fields) do merged[k] = v end end
      return emit(level, msg, merged)
    end
  end
  return bound
end

return _M
