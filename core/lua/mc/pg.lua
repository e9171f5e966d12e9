-- mc.pg: Postgres through libpq. The C half (mc.pg_native, core/pg.c) connects,
-- runs statements and COPY and parses array literals; this half holds the type
-- decoders (by OID, extensible: pg.decoders[oid] = function(text) ... end),
-- connect's defaults, transactions and quoting.
local native = require "mc.pg_native"
local json = require "mc.json"
local unescape = require("mc.url").unescape

local decoders = native.decoders
local parse_array = native.parse_array
local null = json.null

local _M = {
  null = null,
  decoders = decoders,
  parse_array = parse_array,
  OID = {
    bool = 16, bytea = 17, char = 18, name = 19, int8 = 20, int2 = 21, int4 = 23,
    text = 25, oid = 26, json = 114, float4 = 700, float8 = 701, bpchar = 1042,
    varchar = 1043, date = 1082, timestamp = 1114, timestamptz = 1184,
    numeric = 1700, uuid = 2950, jsonb = 3802,
  },
}
local OID = _M.OID

-- ---- decoders ---------------------------------------------------------------

local function to_integer(s)
  return math.tointeger(tonumber(s)) or s
end

local FLOAT_WORDS = { NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge }

local function to_float(s)
  return tonumber(s) or FLOAT_WORDS[s] or s
end

-- numeric: an integer when integral and within int64; a float when it has at
-- most 15 significant digits (those survive a double exactly as written);
-- otherwise (and NaN, Infinity) the string, so that no digit is lost.
local function to_numeric(s)
  if s:find("^%-?%d+$") then
    local i = math.tointeger(tonumber(s))
    if i and tostring(i) == s then return i end
    return s
  end
  local digits = s:gsub("%D", ""):gsub("^0+", "")
  if #digits <= 15 and s:find("^%-?%d*%.%d*$") then return tonumber(s) or s end -- "." is no number
  return s
end

local function to_json(s)
  local v = json.decode(s)
  if v == nil then return s end -- not JSON after all: keep the text
  return v
end

-- "2024-01-02 03:04:05.5+00" (DateStyle ISO, TimeZone UTC) -> "2024-01-02T03:04:05.5Z";
-- "infinity" and BC dates stay as Postgres writes them.
local function to_iso8601(s)
  local date, time, zone = s:match("^(%d%d%d%d+%-%d%d%-%d%d) (%d%d:%d%d:%d%d[%.%d]*)(.*)$")
  if not date or zone:find("BC", 1, true) then return s end
  if zone == "+00" then zone = "Z"
  elseif zone:find("^[+-]%d%d$") then zone = zone .. ":00" end
  return date .. "T" .. time .. zone
end

decoders[OID.bool] = function(s) return s == "t" end
decoders[OID.int2] = to_integer
decoders[OID.int4] = to_integer
decoders[OID.int8] = to_integer
decoders[OID.oid] = to_integer
decoders[OID.float4] = to_float
decoders[OID.float8] = to_float
decoders[OID.numeric] = to_numeric
decoders[OID.json] = to_json
decoders[OID.jsonb] = to_json
decoders[OID.timestamp] = to_iso8601
decoders[OID.timestamptz] = to_iso8601

-- array type OID -> element type OID; elements use decoders[element] as it is
-- when the value is decoded, so a replaced element decoder applies to arrays too.
local ARRAYS = {
  [1000] = OID.bool, [1002] = OID.char, [1003] = OID.name, [1005] = OID.int2,
  [1007] = OID.int4, [1009] = OID.text, [1014] = OID.bpchar, [1015] = OID.varchar,
  [1016] = OID.int8, [1021] = OID.float4, [1022] = OID.float8, [1028] = OID.oid,
  [1115] = OID.timestamp, [1182] = OID.date, [1185] = OID.timestamptz,
  [1231] = OID.numeric, [199] = OID.json, [2951] = OID.uuid, [3807] = OID.jsonb,
}

for array_oid, element_oid in pairs(ARRAYS) do
  decoders[array_oid] = function(s)
    return parse_array(s, decoders[element_oid]) or s
  end
end

-- ---- connecting ---------------------------------------------------------------

local function replace_plain(s, old, new)
  local out, from = {}, 1
  while true do
    local i, j = s:find(old, from, true)
    if not i then break end
    out[#out + 1] = s:sub(from, i - 1) .. new
    from = j + 1
  end
  out[#out + 1] = s:sub(from)
  return table.concat(out)
end

-- libpq does not echo passwords, but its URL parse errors echo fragments.
local function scrub(err, url)
  for _, secret in ipairs({
    url:match("^%a+://[^:@/]*:([^@/]+)@") or "",
    url:match("[?&]password=([^&]+)") or "",
  }) do
    if #secret > 0 then
      err = replace_plain(replace_plain(err, secret, "***"), unescape(secret), "***")
    end
  end
  return err
end

-- pg.connect([url][, {statement_timeout = ms, connect_timeout = s, prepare = true}])
--   -> conn | nil, err
-- url defaults to DATABASE_URL; libpq reads it whole (sslmode, connect_timeout,
-- ...); connect_timeout is the URL's, else opts.connect_timeout, else 10 s. query() prepares each
-- distinct SQL text once per connection (up to 256) and reuses it; prepare =
-- false turns that off (for a transaction-mode pooler such as PgBouncer < 1.21).
function _M.connect(url, opts)
  if url ~= nil and type(url) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(url) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'connect' (table expected, got " .. type(opts) .. ")", 2)
  end
  if url == nil or url == "" then url = os.getenv("DATABASE_URL") end
  if url == nil or url == "" then
    error("mc.pg.connect: no URL given and DATABASE_URL is not set", 2)
  end
  if not (url:find("^postgres://") or url:find("^postgresql://")) then
    return nil, "not a postgres:// or postgresql:// URL"
  end
  local ct = opts and opts.connect_timeout
  if ct ~= nil and not url:find("[?&]connect_timeout=") then
    if math.type(ct) ~= "integer" or ct < 1 then
      error("bad option 'connect_timeout' (whole seconds >= 1 expected)", 2)
    end
    url = url .. (url:find("?", 1, true) and "&" or "?") .. "connect_timeout=" .. ct
  end
  local conn, err = native.connect(url, opts and opts.statement_timeout, opts and opts.prepare)
  if not conn then return nil, scrub(err, url) end
  return conn
end

-- ---- transactions -------------------------------------------------------------

local methods = native.methods

-- conn:transaction(fn) -> fn's results (true if none) | nil, err
-- BEGIN, fn(conn), COMMIT. If fn raises: ROLLBACK and re-raise. If fn returns
-- nil, err: ROLLBACK and return nil, err. A transaction an error aborted (a
-- failed statement fn ignored, a lost connection) is rolled back: nil, err.
-- Nesting raises.
function methods:transaction(fn)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'transaction' (function expected, got " .. type(fn) .. ")", 2)
  end
  local status, err = self:status()
  if not status then return nil, err end
  if status == "intrans" or status == "inerror" or status == "active" then
    error("mc.pg: transaction() inside a transaction (nesting is not supported)", 2)
  end
  local ok, state
  ok, err, state = self:exec("BEGIN")
  if not ok then return nil, err, state end
  self:_transaction_block(true)
  local res = table.pack(pcall(fn, self))
  self:_transaction_block(false)
  if not res[1] then
    self:exec("ROLLBACK")
    error(res[2], 0)
  end
  if res[2] == nil and res[3] ~= nil then
    self:exec("ROLLBACK")
    return nil, res[3]
  end
  status = self:status()
  if status ~= "intrans" then
    self:exec("ROLLBACK")
    if status == "inerror" then return nil, "transaction aborted by an earlier error" end
    return nil, "connection lost in transaction"
  end
  ok, err, state = self:exec("COMMIT")
  if not ok then return nil, err, state end
  if res.n == 1 then return true end
  return table.unpack(res, 2, res.n)
end

-- ---- quoting ---------------------------------------------------------------------

-- pg.quote_ident(name) -> "name" (always quoted: case and reserved words kept)
function _M.quote_ident(name)
  if type(name) ~= "string" then
    error("bad argument #1 to 'quote_ident' (string expected, got " .. type(name) .. ")", 2)
  end
  if name == "" or name:find("\0", 1, true) then
    error("bad argument #1 to 'quote_ident' (empty or contains a NUL byte)", 2)
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

-- pg.quote_literal(s) -> 'It''s' (standard_conforming_strings=on, which every
-- mc.pg connection sets: backslashes are plain characters)
function _M.quote_literal(s)
  if type(s) == "number" then s = tostring(s) end
  if type(s) ~= "string" then
    error("bad argument #1 to 'quote_literal' (string expected, got " .. type(s) .. ")", 2)
  end
  if s:find("\0", 1, true) then
    error("bad argument #1 to 'quote_literal' (contains a NUL byte)", 2)
  end
  return "'" .. s:gsub("'", "''") .. "'"
end

return _M
