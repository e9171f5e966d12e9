-- fuzz target: the router (mc.web, the application's own routes from
-- scripts/app.lua) and the URL decoders under it (core/url.c: parse, unescape,
-- decode_query, which also decodes form bodies). The first byte picks the
-- method; the rest is the request target, path?query.
local web = require "mc.web"
local url = require "mc.url"

local app = web.load_app("scripts/app.lua")
local METHODS = { "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE" }

local function check_query(q, err)
  if q == nil then return assert(type(err) == "string") end
  for k, v in pairs(q) do
    assert(type(k) == "string")
    if type(v) == "table" then
      for _, item in ipairs(v) do assert(type(item) == "string") end
    else
      assert(type(v) == "string")
    end
  end
end

return function(data)
  local method = METHODS[(data:byte(1) or 0) % #METHODS + 1]
  local target = data:sub(2)
  local path, query = target:match("^([^?]*)%??(.*)$")
  local handler, params = app:match(method, path)
  if handler then
    assert(type(handler) == "function")
    for k, v in pairs(params) do assert(type(k) == "string" and type(v) == "string") end
  elseif params then
    assert(next(params) ~= nil, "405 with no method allowed")
  end
  check_query(url.decode_query(query))
  local s, err = url.unescape(path)
  assert(s == nil and type(err) == "string" or type(s) == "string")
  local parts, perr = url.parse(target)
  assert(parts == nil and type(perr) == "string" or type(parts) == "table")
end
