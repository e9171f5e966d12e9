-- mc.redis: Redis over the core's own socket (mc.redis_native, core/redis.c).
-- This half reads the URL and the options, and adds what is convenient to write
-- in Lua to the connection's methods: pipeline(fn) and eval (EVALSHA first).
--
--   local r = assert(redis.connect())            -- REDIS_TLS_URL, else REDIS_URL
--   r:call("SET", "k", 1)                        -- "OK"
--   r:call("GET", "nope")                        -- mc.null
--   r:call("INCR", "a_list")                     -- nil, "WRONGTYPE ..."
--   local res = r:pipeline(function(p) p:call("INCR", "n"); p:call("GET", "n") end)
--   r:eval("return redis.call('GET', KEYS[1])", { "k" })
local native = require "mc.redis_native"
local url = require "mc.url"

local type = type
local error = error
local tonumber = tonumber
local getenv = os.getenv
local unpack = table.unpack

local _M = {
  null = require("mc.json").null,
}

local DEFAULT_PORT = 6379
local INT_MAX = 0x7fffffff -- the C side's limit for db
local CONNECT_TIMEOUT = 5 -- seconds: TCP, TLS, AUTH and SELECT together
local TIMEOUT = 10        -- seconds: one command or one pipeline, sent and answered

local EMPTY = {}

local function nonempty(s)
  if s == nil or s == "" then return nil end
  return s
end

-- redis[s]://[[user]:password@]host[:port][/db] -> native.connect's config
local function parse_url(s)
  local u, err = url.parse(s)
  if not u then return nil, "bad Redis URL: " .. err end
  if u.scheme ~= "redis" and u.scheme ~= "rediss" then
    return nil, "bad Redis URL: the scheme must be redis or rediss"
  end
  local db = 0
  if u.path and u.path ~= "" and u.path ~= "/" then
    db = tonumber(u.path:match("^/(%d+)/?$"))
    if not db or db > INT_MAX then return nil, "bad Redis URL: the path must be a database index (/2)" end
  end
  if u.port == 0 then return nil, "bad Redis URL: port 0" end
  return {
    host = u.host:match("^%[(.*)%]$") or u.host, -- getaddrinfo wants IPv6 bare
    port = u.port or DEFAULT_PORT,
    tls = u.scheme == "rediss",
    user = nonempty(u.user),
    password = nonempty(u.password),
    db = db,
  }
end

local function seconds(v, default, name)
  if v == nil then return default end
  if type(v) ~= "number" or v <= 0 then
    error("bad option " .. name .. " (seconds > 0 expected)", 3)
  end
  return v
end

-- connect(url?, opts?) -> conn | nil, err. opts: connect_timeout, timeout
-- (seconds), verify (boolean; default REDIS_TLS_VERIFY=1), ca_file (default
-- REDIS_TLS_CA_FILE, else the system store). Verification is off by default
-- because Heroku Redis serves a self-signed certificate.
function _M.connect(s, opts)
  if s ~= nil and type(s) ~= "string" then
    error("bad argument #1 to 'connect' (string expected, got " .. type(s) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'connect' (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or EMPTY
  s = s or nonempty(getenv("REDIS_TLS_URL")) or nonempty(getenv("REDIS_URL"))
  if not s then return nil, "no Redis URL: neither REDIS_TLS_URL nor REDIS_URL is set" end
  local cfg, err = parse_url(s)
  if not cfg then return nil, err end
  cfg.connect_timeout = seconds(opts.connect_timeout, CONNECT_TIMEOUT, "connect_timeout")
  cfg.timeout = seconds(opts.timeout, TIMEOUT, "timeout")
  if cfg.tls then
    cfg.verify = opts.verify
    if cfg.verify == nil then cfg.verify = getenv("REDIS_TLS_VERIFY") == "1" end
    cfg.ca_file = opts.ca_file or nonempty(getenv("REDIS_TLS_CA_FILE"))
  end
  return native.connect(cfg)
end

local methods = native.methods

-- r:pipeline(fn) -> results | nil, err. fn(p) queues commands with p:call(cmd,
-- ...) (checked and encoded at once, in C); they leave in one write and the
-- results come back in order, each the value or
-- {err = "ERR ..."} for a command Redis refused. nil, err is a transport
-- failure (nothing is known of which commands ran).
function methods:pipeline(fn)
  if type(fn) ~= "function" then
    error("bad argument #1 to 'pipeline' (function expected, got " .. type(fn) .. ")", 2)
  end
  local p = native.pipeline()
  fn(p)
  return self:send_pipeline(p)
end

-- r:eval(script, keys?, args?) -> value | nil, err: EVALSHA by the script's
-- SHA1, and EVAL only when the server does not have it cached (NOSCRIPT).
function methods:eval(script, keys, args)
  if type(script) ~= "string" then
    error("bad argument #1 to 'eval' (string expected, got " .. type(script) .. ")", 2)
  end
  if keys ~= nil and type(keys) ~= "table" then
    error("bad argument #2 to 'eval' (table expected, got " .. type(keys) .. ")", 2)
  end
  if args ~= nil and type(args) ~= "table" then
    error("bad argument #3 to 'eval' (table expected, got " .. type(args) .. ")", 2)
  end
  keys, args = keys or EMPTY, args or EMPTY
  local nkeys, nargs = #keys, #args
  local argv = { native.sha1_hex(script), nkeys }
  for i = 1, nkeys do argv[2 + i] = keys[i] end
  for i = 1, nargs do argv[2 + nkeys + i] = args[i] end
  local res, err = self:call("EVALSHA", unpack(argv, 1, 2 + nkeys + nargs))
  if res == nil and err and err:find("^NOSCRIPT") then
    argv[1] = script
    res, err = self:call("EVAL", unpack(argv, 1, 2 + nkeys + nargs))
  end
  return res, err
end

return _M
