-- mc.env: typed configuration from the environment.
--   env.int("PORT", 5000)             -- default when unset or empty
--   env.url("DATABASE_URL")           -- no default: required
-- A malformed value (or a missing required one) raises an error that names the
-- variable and says what was expected; secret values are never echoed.
local url = require "mc.url"
local redact = require "mc.redact"

local _M = {}

local function shown(name, raw)
  if redact.is_secret_key(name) then return redact.FILTERED end
  raw = redact.text(raw)
  if #raw > 60 then raw = raw:sub(1, 57) .. "..." end
  return string.format("%q", raw)
end

local function fail(name, expected, raw)
  error(string.format("%s: expected %s, got %s", name, expected, shown(name, raw)), 3)
end

-- raw(name) -> the value, or nil when unset or empty (Heroku config vars can be
-- set to the empty string; that means "not configured" here).
local function raw(name)
  if type(name) ~= "string" or name == "" then
    error("env: variable name must be a non-empty string", 3)
  end
  local v = os.getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- Reads name; if unset returns default, or raises when there is none.
local function read(name, default, parse, expected)
  local v = raw(name)
  if v == nil then
    if default == nil then error(name .. " is required but not set", 2) end
    return default
  end
  local value, reason = parse(v)
  if value == nil then fail(name, reason or expected, v) end
  return value
end

function _M.get(name) return raw(name) end

function _M.str(name, default)
  return read(name, default, function(v) return v end)
end

local function check_range(n, opts)
  if opts and opts.min and n < opts.min then return nil end
  if opts and opts.max and n > opts.max then return nil end
  return n
end

local function range_text(kind, opts)
  if not opts then return kind end
  if opts.min and opts.max then return string.format("%s in %s..%s", kind, opts.min, opts.max) end
  if opts.min then return string.format("%s >= %s", kind, opts.min) end
  if opts.max then return string.format("%s <= %s", kind, opts.max) end
  return kind
end

-- env.int(name, default, {min =, max =})
function _M.int(name, default, opts)
  local expected = range_text("an integer", opts)
  return read(name, default, function(v)
    local n = v:match("^%s*[-+]?%d+%s*$") and math.tointeger(tonumber(v))
    if not n then return nil, expected end
    return check_range(n, opts), expected
  end, expected)
end

-- env.number(name, default, {min =, max =})
function _M.number(name, default, opts)
  local expected = range_text("a number", opts)
  return read(name, default, function(v)
    local n = tonumber(v)
    if not n or n ~= n or n == math.huge or n == -math.huge then return nil, expected end
    return check_range(n, opts), expected
  end, expected)
end

local BOOLS = {
  ["1"] = true, ["true"] = true, yes = true, on = true,
  ["0"] = false, ["false"] = false, no = false, off = false,
}

function _M.bool(name, default)
  return read(name, default, function(v)
    local b = BOOLS[v:lower()]
    if b == nil then return nil end
    return b
  end, "a boolean (true/false, 1/0, yes/no, on/off)")
end

-- env.enum(name, {"a", "b"}, default)
function _M.enum(name, choices, default)
  local set = {}
  for _, c in ipairs(choices) do set[c] = true end
  return read(name, default, function(v)
    return set[v] and v or nil
  end, "one of " .. table.concat(choices, ", "))
end

-- env.list(name, default, sep): "a, b ,c" -> {"a", "b", "c"}
function _M.list(name, default, sep)
  sep = sep or ","
  return read(name, default, function(v)
    local out = {}
    for item in (v .. sep):gmatch("(.-)" .. sep:gsub("%p", "%%%0")) do
      item = item:match("^%s*(.-)%s*$")
      if item ~= "" then out[#out + 1] = item end
    end
    return out
  end, "a list")
end

-- env.url(name, default, {schemes = {"postgres", "postgresql"}}) -> url, parts
-- (parts as mc.url.parse returns them; for the default, parsed too).
function _M.url(name, default, opts)
  local schemes = opts and opts.schemes
  local expected = schemes and ("a " .. table.concat(schemes, "/") .. " URL") or "a URL"
  local v = raw(name)
  if v == nil and default == nil then error(name .. " is required but not set", 2) end
  v = v or default
  local parts, err = url.parse(v)
  if not parts then
    error(string.format("%s: expected %s, got %s (%s)", name, expected, shown(name, v), err), 2)
  end
  if not parts.host then
    error(string.format("%s: expected %s with a host, got %s", name, expected, shown(name, v)), 2)
  end
  if schemes then
    local ok = false
    for _, s in ipairs(schemes) do ok = ok or parts.scheme == s end
    if not ok then
      error(string.format("%s: expected %s, got %s", name, expected, shown(name, v)), 2)
    end
  end
  return v, parts
end

return _M
