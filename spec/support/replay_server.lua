-- support.replay_server: the real `multiconnect web` on a free port answering every
-- request with the next answer a spec queued, word for word as the external API
-- documents it (the shapes the sandbox never produces: Retry-After on a 429, an
-- error document of another shape, a body of the wrong type), and recording what
-- it was sent. Answers and requests live in a Redis database of the spec's own.
--   local srv = replay.start(21)                 -- srv.url: "http://127.0.0.1:<port>"
--   srv:answer(429, { message = "slow down" }, { ["Retry-After"] = "7" })
--   srv:requests()  -> {{method, path, query, headers, body}...}, oldest first
--   srv:reset()     -- forget answers and requests;  srv:stop()
--   local srv = replay.fixture(_ENV, 21, function(s) config:set{ API_URL = s.url } end)
--     -- in a describe (busted's hooks come from the spec's _ENV): started in its
--     -- setup, stopped in its teardown, reset and handed to the function before each test
-- A request with no answer queued gets a 599 saying so.
local json = require "mc.json"
local redis_db = require "support.redis_db"
local server = require "support.server"

local _M = {}

local APP = [[
local web = require "mc.web"
local redis = require "mc.redis"
local json = require "mc.json"
local host = require "mc.host"

local app = web.router()

local function answer(req)
  local r = assert(redis.connect(os.getenv("REPLAY_REDIS_URL")))
  r:call("RPUSH", "replay:requests", assert(json.encode({ method = req.method, path = req.path,
    query = req.query, headers = req.headers, body = req.body })))
  local raw = r:call("LPOP", "replay:answers")
  r:close()
  if raw == json.null then return 599, { error = "replay: no answer queued for " .. req.method .. " " .. req.path } end
  local a = json.decode(raw)
  if a.delay then host.sleep(a.delay) end
  return a.status, a.body, a.headers
end

for _, method in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE" }) do app:route(method, "/*", answer) end
return app
]]

local Replay = {}
Replay.__index = Replay

-- start(db) -> server, once it accepts
function _M.start(db)
  local self = setmetatable({ db = redis_db.open(db) }, Replay)
  self.web = server.start({ files = { ["scripts/app.lua"] = APP },
    env = { REPLAY_REDIS_URL = self.db.url, WEB_THREADS = "2", MC_RELOAD = "false" } })
  self.url = "http://127.0.0.1:" .. self.web.port
  return self
end

-- answer(status, body (table -> JSON, string as is), headers, delay seconds)
-- fixture(spec_env, db, before) -> a handle that is the server once the describe's setup ran
function _M.fixture(spec, db, before)
  local handle = {}
  spec.setup(function() setmetatable(handle, { __index = _M.start(db) }) end)
  spec.teardown(function() getmetatable(handle).__index:stop() end)
  spec.before_each(function()
    handle:reset()
    if before then before(handle) end
  end)
  return handle
end

function Replay:answer(status, body, headers, delay)
  local doc = { status = status, body = body, headers = headers or {}, delay = delay }
  if type(body) == "table" and not (headers and headers["Content-Type"]) then
    doc.headers["Content-Type"] = "application/json"
  end
  assert(self.db.r:call("RPUSH", "replay:answers", assert(json.encode(doc))))
  return self
end

function Replay:requests()
  local out = {}
  for i, raw in ipairs(assert(self.db.r:call("LRANGE", "replay:requests", 0, -1))) do out[i] = json.decode(raw) end
  return out
end

function Replay:reset()
  assert(self.db.r:call("DEL", "replay:answers", "replay:requests"))
end

function Replay:stop()
  self.web:stop()
  self.db:close()
end

return _M
