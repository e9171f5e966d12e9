-- mc.web: the router and request object behind `multiconnect web`.
--
-- scripts/app.lua builds and returns a router:
--
--   local web = require "mc.web"
--   local app = web.router()
--   app:get("/organizations/:org_id", function(req)
--     return 200, { org = req.params.org_id }           -- a table is sent as JSON
--   end)
--   app:post("/hooks/*", function(req) return 202, "ok", { ["X-Thing"] = "1" } end)
--   return app
--
-- A handler gets req (method, path, params, query, headers, body, json(), form(),
-- ip, id) and returns status, body (table -> JSON, string as is) and headers.
-- The router answers 404 and 405 (with Allow) itself; HEAD is served by GET
-- routes; a handler that raises gets a 500 whose body carries the request id,
-- with the traceback in the log only.
local native = require "mc.web_native"
local json = require "mc.json"
local log = require "mc.log"
local host = require "mc.host"
local decode_query = require("mc.url").decode_query
local env = require "mc.env"
local conns = require "mc.conns"
local sched = require "mc.sched"

local running, yield, remove = coroutine.running, coroutine.yield, table.remove
local PARK = sched.PARK
local PARKED_MAX = 64

local _M = {}

local JSON_HEADERS = { ["Content-Type"] = "application/json" }
local TEXT_TYPE = "text/plain; charset=utf-8"
local EMPTY = setmetatable({}, { __newindex = function() error("params are read-only", 2) end })
local METHODS = { "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS" }

-- ---- router ---------------------------------------------------------------

local Router = {}
Router.__index = Router

function _M.router()
  return setmetatable({ static = {}, dynamic = {}, by_pattern = {} }, Router)
end

-- "/orgs/:id/events/*" -> "^/orgs/([^/]+)/events/(.*)$", { "id", "*" }
local function compile(pattern)
  local star = pattern:find("*", 1, true)
  if star and star ~= #pattern then error("route " .. pattern .. ": '*' only at the end", 3) end
  local names = {}
  local lua = pattern:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
  lua = lua:gsub(":([%a_][%w_]*)", function(name)
    names[#names + 1] = name
    return "([^/]+)"
  end)
  if lua:sub(-1) == "*" then
    names[#names + 1] = "*"
    lua = lua:sub(1, -2) .. "(.*)"
  end
  return "^" .. lua .. "$", names
end

function Router:route(method, pattern, handler)
  if type(pattern) ~= "string" or pattern:sub(1, 1) ~= "/" then
    error("route: pattern must be a string starting with /", 2)
  end
  if type(handler) ~= "function" then error("route " .. pattern .. ": handler must be a function", 2) end
  method = method:upper()
  if not pattern:find("[:*]") then
    local methods = self.static[pattern] or {}
    self.static[pattern] = methods
    methods[method] = handler
    return self
  end
  local entry = self.by_pattern[pattern]
  if not entry then
    local lua, names = compile(pattern)
    entry = { pattern = lua, names = names, methods = {} }
    self.by_pattern[pattern] = entry
    self.dynamic[#self.dynamic + 1] = entry
  end
  entry.methods[method] = handler
  return self
end

for _, m in ipairs(METHODS) do
  Router[m:lower()] = function(self, pattern, handler) return self:route(m, pattern, handler) end
end

local function allow_header(methods)
  local list = {}
  for m in pairs(methods) do list[#list + 1] = m end
  if methods.GET and not methods.HEAD then list[#list + 1] = "HEAD" end
  table.sort(list)
  return table.concat(list, ", ")
end

local function pick(methods, method)
  return methods[method] or (method == "HEAD" and methods.GET) or nil
end

-- Adds the methods of a route that matched the path to allowed (made on demand).
local function add_allowed(allowed, methods)
  allowed = allowed or {}
  for m in pairs(methods) do allowed[m] = true end
  return allowed
end

-- match(method, path) -> handler, params | nil, allowed-methods-table | nil
function Router:match(method, path)
  local methods = self.static[path]
  local allowed
  if methods then
    local h = pick(methods, method)
    if h then return h, EMPTY end
    allowed = add_allowed(nil, methods)
  end
  for _, entry in ipairs(self.dynamic) do
    local caps = { path:match(entry.pattern) }
    if caps[1] ~= nil then
      local h = pick(entry.methods, method)
      if h then
        local params = {}
        for i, name in ipairs(entry.names) do params[name] = caps[i] end
        return h, params
      end
      allowed = add_allowed(allowed, entry.methods)
    end
  end
  return nil, allowed
end

-- ---- request --------------------------------------------------------------

local LAZY = {
  headers = function(req) return native.headers(req.ctx) end,
  query = function(req) return native.query(req.ctx) end,
  ip = function(req) return native.ip(req.ctx) end,
  json = function(req)
    return function()
      if req.body == nil or req.body == "" then return nil, "empty body" end
      return json.decode(req.body)
    end
  end,
  form = function(req)
    return function() return decode_query(req.body or "") end
  end,
}

local Request = {
  __index = function(req, k)
    local load = LAZY[k]
    if not load then return nil end
    local v = load(req)
    rawset(req, k, v)
    return v
  end,
}

-- ---- responses ------------------------------------------------------------

local function error_response(status, message, id, extra)
  local body = { error = message, request_id = id }
  for k, v in pairs(extra or {}) do body[k] = v end
  return status, json.encode(body), JSON_HEADERS
end

-- Normalizes what a handler returned into status, body string, headers of strings.
local function finish(id, status, body, headers)
  if math.type(status) ~= "integer" or status < 100 or status > 599 then
    log.error("handler returned a bad status", { request_id = id, status = tostring(status) })
    return error_response(500, "internal server error", id)
  end
  local content_type
  if body == json.empty_array then -- json.array({}) of a handler that lists nothing
    body, content_type = "[]", "application/json"
  elseif type(body) == "table" then
    local encoded, err = json.encode(body)
    if not encoded then
      log.error("handler returned a body JSON cannot hold", { request_id = id, error = err })
      return error_response(500, "internal server error", id)
    end
    body, content_type = encoded, "application/json"
  elseif body == nil then
    body = ""
  else
    body = tostring(body)
    content_type = TEXT_TYPE
  end
  if headers == nil then
    return status, body, content_type == "application/json" and JSON_HEADERS or { ["Content-Type"] = content_type }
  end
  local out, has_type = {}, false
  for k, v in pairs(headers) do
    k = tostring(k)
    out[k] = tostring(v)
    if k:lower() == "content-type" then has_type = true end
  end
  if not has_type and content_type then out["Content-Type"] = content_type end
  return status, body, out
end

local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

-- handle(app, method, path, body, id, ctx) -> status, body, headers
function _M.handle(app, method, path, body, id, ctx)
  local handler, params = app:match(method, path)
  if not handler then
    if params then
      local status, b = error_response(405, "method not allowed", id)
      return status, b, { ["Content-Type"] = "application/json", Allow = allow_header(params) }
    end
    return error_response(404, "not found", id)
  end
  local req = setmetatable({ method = method, path = path, params = params, body = body, id = id, ctx = ctx }, Request)
  local ok, status, resp_body, headers = xpcall(handler, traceback, req)
  if not ok then
    log.error("handler failed", { request_id = id, method = method, path = path, error = status })
    return error_response(500, "internal server error", id)
  end
  return finish(id, status, resp_body, headers)
end

-- ---- loading the app and serving ------------------------------------------

-- Loads $MC_ROOT/<app> (scripts/app.lua, say), which must return a router.
function _M.load_app(app)
  local path = host.root .. "/" .. app
  local chunk, err = loadfile(path, "t")
  if not chunk then error(err, 0) end
  local router = chunk()
  if type(router) ~= "table" or type(router.match) ~= "function" then
    error(path .. ": must return a router (require('mc.web').router())", 0)
  end
  return router
end

-- Called by the C server in each new thread state: the state's entry points.
--   start(ctx, method, path, body, id): runs the request's handler in a coroutine
--     of this state's scheduler, up to its end or its first wait on the network;
--     native.finish(ctx, ...) hands its answer to the server when it ends.
--   step(timeout_ms, wake_fd): resumes the handlers whose waits are over,
--     waiting at most timeout_ms (wake_fd, the server's, readable ends the wait).
-- Each request in flight takes its own Postgres and Redis connections from the
-- state's pool (mc.conns), at most WEB_CONNECTIONS of each; more wait for one.
-- yields = false: handlers run in the state's main coroutine, so nothing they
-- call yields and a waiting handler holds its thread (an app that keeps
-- connections of its own, which two waiting handlers would share).
function _M.thread_entry(app_file, yields)
  local app = _M.load_app(app_file)
  local per_thread = env.int("WEB_CONNECTIONS", 5, { min = 1, max = 10000 })
  conns.limit("pg", per_thread)
  conns.limit("redis", per_thread)
  local s = sched.new()
  local handle, answer, release = _M.handle, native.finish, conns.release
  local function run(ctx, method, path, body, id)
    local ok, status, resp_body, headers = pcall(handle, app, method, path, body, id, ctx)
    -- answered whatever the release does: a suspended connection left unanswered
    -- would hold its client and the drain for ever
    local rok, rerr = pcall(release, running())
    if not rok then log.error("web: giving the request's connections back failed", { err = rerr, request_id = id }) end
    answer(ctx, ok, status, resp_body, headers)
  end
  if yields == false then return { start = run, step = function() end } end
  -- A coroutine serves one request after another: parked between them (at most
  -- PARKED_MAX), it keeps its grown stack, which a new one would grow again.
  -- start() leaves the request here for take(): run's frame holds it, and ends
  -- before the coroutine parks, so a parked one keeps no request alive.
  local parked = {}
  local t_ctx, t_method, t_path, t_body, t_id
  local function take()
    local ctx, method, path, body, id = t_ctx, t_method, t_path, t_body, t_id
    t_ctx, t_method, t_path, t_body, t_id = nil, nil, nil, nil, nil
    return ctx, method, path, body, id
  end
  local function serve()
    while true do
      run(take())
      if #parked >= PARKED_MAX then return end
      parked[#parked + 1] = running()
      yield(PARK) -- resumed by start() with the next request
    end
  end
  return {
    start = function(ctx, method, path, body, id)
      t_ctx, t_method, t_path, t_body, t_id = ctx, method, path, body, id
      local co = remove(parked)
      if co then return s:reuse(co) end
      return s:spawn(serve)
    end,
    step = function(timeout_ms, wake_fd) s:step(timeout_ms / 1000, wake_fd) end,
  }
end

-- `multiconnect web` and `sandbox`: opts.app (the file under MC_ROOT that
-- returns the router), opts.watch (the folders under MC_ROOT whose edits reload
-- it), opts.port_var and opts.port (the port's variable and default); the rest
-- of the configuration comes from the environment; opts.yield = false: handlers
-- do not yield (see thread_entry). Serves until SIGTERM.
function _M.serve(opts)
  local ok, err = native.serve({
    app = opts.app,
    watch = opts.watch,
    port = env.int(opts.port_var or "PORT", opts.port or 5000, { min = 1, max = 65535 }),
    bind = env.str("WEB_BIND", "0.0.0.0"),
    threads = env.int("WEB_THREADS", host.cpus(), { min = 1, max = 256 }),
    max_body = env.int("WEB_MAX_BODY", 1024 * 1024, { min = 1 }),
    max_header = env.int("WEB_MAX_HEADER", 8 * 1024, { min = 4096 }),
    max_connections = env.int("WEB_MAX_CONNECTIONS", 1000, { min = 1 }),
    max_connections_per_ip = env.int("WEB_MAX_CONNECTIONS_PER_IP", 0, { min = 0 }),
    idle_timeout = env.int("WEB_IDLE_TIMEOUT", 30, { min = 1 }),
    header_timeout = env.number("WEB_HEADER_TIMEOUT", 10, { min = 0.1 }),
    request_timeout = env.number("WEB_REQUEST_TIMEOUT", 30, { min = 0.1 }),
    shutdown_timeout = env.number("SHUTDOWN_TIMEOUT", 25, { min = 0 }),
    reload = env.bool("MC_RELOAD", true),
    yield = opts.yield ~= false,
  })
  if not ok then
    io.stderr:write("multiconnect web: ", err, "\n")
    return 1
  end
  return 0
end

return _M
