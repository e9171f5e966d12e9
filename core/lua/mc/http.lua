-- mc.http: the HTTP client (libcurl, blocking, one kept-alive handle per Lua state).
--   local res, err = http.request{ method = "POST", url = base .. "/apps",
--     headers = { Authorization = "Bearer " .. token }, json = { name = "x" } }
--   if not res then return nil, "create app: " .. err end   -- "timeout", "tls: ..."
--   if res.status ~= 201 then ... end
--   local doc, jerr = res:json()
-- An HTTP status is never an error: only transport failures return nil, err.
-- Misuse (no url, two bodies, a bad header) raises. The C half is mc.http_native.
local native = require "mc.http_native"
local json = require "mc.json"

local _M = {}

local escape = native.escape
_M.escape = escape -- percent-encodes all but A-Z a-z 0-9 - . _ ~

local Response = {}
Response.__index = Response

-- res:json() -> the decoded body, or nil, err
function Response:json()
  return json.decode(self.body)
end

-- Errors name the caller's line: `level` counts frames up to the user's code
-- (every public entry tail-calls, so it is 2 in the first internal function).
local function scalar(v, what, level)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  error("http: " .. what .. " values must be strings, numbers or booleans", level + 1)
end

local function encode(t, what, level)
  if type(t) ~= "table" then error("http: " .. what .. " must be a table", level) end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then error("http: " .. what .. " keys must be strings", level) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v, ek = t[k], escape(k)
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = ek .. "=" .. escape(scalar(x, what, level)) end
    else
      out[#out + 1] = ek .. "=" .. escape(scalar(v, what, level))
    end
  end
  return table.concat(out, "&")
end

-- encode_query({k = v | {v1, v2}}) -> "k=v&k2=v1&k2=v2": keys sorted so the result
-- is stable; the encoding of query strings and form bodies.
function _M.encode_query(t)
  return encode(t, "query", 2)
end

local function with_query(url, query)
  if type(query) == "table" then query = encode(query, "query", 4) end
  if type(query) ~= "string" then error("http: query must be a table or a string", 3) end
  if query == "" then return url end
  local base, fragment = url:match("^([^#]*)(.*)$")
  return base .. (base:find("?", 1, true) and "&" or "?") .. query .. fragment
end

local function has_header(headers, name)
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return true end
  end
  return false
end

-- The body and its default Content-Type from exactly one of body, json, form.
local function body_of(opts, headers)
  local n = (opts.body ~= nil and 1 or 0) + (opts.json ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0)
  if n > 1 then error("http: give only one of body, json, form", 3) end
  local body, ctype = opts.body, nil
  if body ~= nil and type(body) ~= "string" then error("http: body must be a string", 3) end
  if opts.json ~= nil then
    local err
    body, err = json.encode(opts.json)
    if not body then error("http: json body: " .. err, 3) end
    ctype = "application/json"
  elseif opts.form ~= nil then
    body, ctype = encode(opts.form, "form", 4), "application/x-www-form-urlencoded"
  end
  if ctype and not has_header(headers, "content-type") then headers["Content-Type"] = ctype end
  return body
end

local function request(opts)
  if type(opts) ~= "table" then error("http: expected a table of options", 2) end
  local url = opts.url
  if type(url) ~= "string" or url == "" then error("http: url is required", 2) end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then error("http: headers must be a table", 2) end
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local body = body_of(opts, headers)
  if opts.query ~= nil then url = with_query(url, opts.query) end
  local status, res_headers, res_body = native.request{
    method = opts.method, url = url, headers = headers, body = body,
    timeout = opts.timeout, connect_timeout = opts.connect_timeout,
    follow = opts.follow, max_body = opts.max_body, insecure = opts.insecure,
  }
  if not status then return nil, res_headers end
  return setmetatable({ status = status, headers = res_headers, body = res_body }, Response)
end

-- http.request{method = "GET", url, headers, query, body | json | form,
--   timeout = 30, connect_timeout = 10, follow = 0, max_body = 16 MiB,
--   insecure = false} -> res | nil, err
_M.request = request

-- http.get(url, opts), http.post(url, opts), ... : request with method and url set.
for _, method in ipairs { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" } do
  _M[method:lower()] = function(url, opts)
    if opts ~= nil and type(opts) ~= "table" then error("http: options must be a table", 2) end
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.method, o.url = method, url
    return request(o)
  end
end

return _M
