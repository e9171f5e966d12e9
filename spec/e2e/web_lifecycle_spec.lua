-- multiconnect web over its lifetime: hot reload while serving, and the SIGTERM
-- drain Heroku relies on.
local server = require "support.server"
local json = require "mc.json"
local socket = require "socket"
local proc = require "support.process"

local function app_version(v)
  return string.format([[
local web = require "mc.web"
local log = require "mc.log"
local app = web.router()
app:get("/v", function(req) return 200, { v = %d } end)
app:get("/slow", function(req)
  log.info("slow handler started")
  os.execute("sleep 1.5")
  return 200, { slow = true }
end)
return app
]], v)
end

-- Polls /v until it answers want (bounded); returns every version seen on the way
-- and how many requests did not answer 200.
local function poll_until(srv, want, seconds)
  local seen, failures = {}, 0
  local deadline = socket.gettime() + seconds
  local c = srv:connect()
  while socket.gettime() < deadline do
    local ok, r = pcall(srv.request, srv, "GET", "/v", { conn = c })
    if not ok then
      failures = failures + 1
      c:close()
      c = srv:connect()
    elseif r.status ~= 200 then
      failures = failures + 1
    else
      local v = json.decode(r.body).v
      seen[v] = true
      if v == want then break end
    end
  end
  c:close()
  return seen, failures
end

describe("hot reload", function()
  local srv
  before_each(function()
    srv = server.start({ files = { ["scripts/app.lua"] = app_version(1) }, env = { WEB_THREADS = "2" } })
  end)
  after_each(function() srv:stop() end)

  it("serves edited code without a failed request", function()
    assert.same({ [1] = true }, (poll_until(srv, 1, 5)))
    srv:write("scripts/app.lua", app_version(2))
    local seen, failures = poll_until(srv, 2, 10)
    assert.is_true(seen[2])
    assert.equal(0, failures)
    for v in pairs(seen) do assert.truthy(v == 1 or v == 2) end
    -- the swap happens just before the line is written: give it a moment
    assert.truthy(srv:wait_log("msg=reloaded reason=files-changed", 3), srv:log())
  end)

  it("keeps the previous code serving when an edit does not load, and says where", function()
    srv:write("scripts/app.lua", "local web = require 'mc.web'\nlocal app = web.router(\napp:get(")
    assert.truthy(srv:wait_log("reload failed", 10))
    local r = srv:request("GET", "/v")
    assert.equal(200, r.status)
    assert.equal(1, json.decode(r.body).v)
    local log = srv:log()
    assert.matches("reload failed: previous code keeps serving", log, 1, true)
    assert.matches("app.lua:3:", log, 1, true)
    srv:write("scripts/app.lua", app_version(3))
    local seen = poll_until(srv, 3, 10)
    assert.is_true(seen[3])
  end)
end)

describe("reload on SIGHUP with MC_RELOAD=0", function()
  it("ignores edits until told", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = app_version(1) }, env = { MC_RELOAD = "0" } })
    srv:write("scripts/app.lua", app_version(2))
    -- a pause on purpose: the edit must NOT be served; a watching server reloads
    -- within about 0.5 s (it looks every 0.25 s, and waits for one quiet look)
    socket.sleep(1)
    local v = json.decode(srv:request("GET", "/v").body).v
    srv:signal("HUP")
    local seen = poll_until(srv, 2, 10)
    srv:stop()
    assert.equal(1, v)
    assert.is_true(seen[2])
  end)
end)

describe("SIGTERM", function()
  it("finishes the request in flight, refuses new connections, exits 0", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = app_version(1) } })
    local slow = srv:connect()
    slow:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.truthy(srv:wait_log("slow handler started", 5), srv:log())
    srv:signal("TERM")
    local err = proc.wait_for(function()
      local c, e = socket.connect("127.0.0.1", srv.port)
      if c then c:close() end
      return not c and e
    end, 5, "the server to stop taking connections")
    local r = server.read_response(slow)
    slow:close()
    assert.is_true(srv:wait(10))
    local status = srv:exit_status()
    local log = srv:log()
    srv:stop()
    assert.equal("connection refused", err)
    assert.equal(200, r.status)
    assert.equal("close", r.headers["connection"])
    assert.same({ slow = true }, json.decode(r.body))
    assert.equal(0, status)
    assert.matches("msg=\"shutting down\" signal=TERM", log, 1, true)
  end)

  it("gives up on a request that outlives SHUTDOWN_TIMEOUT", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = app_version(1) }, env = { SHUTDOWN_TIMEOUT = "0.2" } })
    local slow = srv:connect()
    slow:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.truthy(srv:wait_log("slow handler started", 5), srv:log())
    srv:signal("TERM")
    assert.is_true(srv:wait(10))
    local log = srv:log()
    slow:close()
    srv:stop()
    assert.matches("shutdown timeout: dropping requests", log, 1, true)
  end)
end)

describe("SIGTERM with a handler that never finishes", function()
  it("exits once SHUTDOWN_TIMEOUT is over", function()
    local srv = server.start({ files = { ["scripts/app.lua"] = [[
local web = require "mc.web"
local app = web.router()
app:get("/stuck", function(req)
  require("mc.log").info("stuck handler started")
  local t = os.clock()
  while os.clock() - t < 20 do end
  return 200, "late"
end)
return app
]] }, env = { SHUTDOWN_TIMEOUT = "0.3" } })
    local stuck = srv:connect()
    stuck:send("GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.truthy(srv:wait_log("stuck handler started", 5), srv:log())
    srv:signal("TERM")
    local exited = srv:wait(4)
    local log = srv:log()
    stuck:close()
    srv:stop()
    assert.is_true(exited, log)
    assert.matches("shutdown timeout: dropping requests", log, 1, true)
  end)
end)

describe("startup", function()
  it("refuses a bad WEB_BIND and leaks nothing on the way out", function()
    local root, cleanup = proc.tmpdir()
    os.execute("mkdir -p " .. proc.quote(root .. "/scripts"))
    proc.write(root .. "/scripts/app.lua", app_version(1))
    local r = proc.mc({ "web" }, { env = { MC_ROOT = root, WEB_BIND = "not-an-address",
      PORT = tostring(server.free_port()), WEB_THREADS = "2", MC_RELOAD = "0" } })
    cleanup()
    assert.equal(1, r.code, r.stdout .. r.stderr)
    assert.matches("bad bind address", r.stderr, 1, true)
    assert.is_nil(r.stderr:find("LeakSanitizer", 1, true), r.stderr)
  end)
end)
