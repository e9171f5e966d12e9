-- mc.web's router, without a server: match() and handle() directly.
local web = require "mc.web"
local json = require "mc.json"

describe("mc.web router", function()
  local function ok() return 200, "ok" end

  it("lists in Allow every method any matching route takes", function()
    local app = web.router()
    app:get("/orgs/new", ok)
    app:post("/orgs/:id", ok)
    app:delete("/orgs/*", ok)
    local status, body, headers = web.handle(app, "PUT", "/orgs/new", nil, "id-1", nil)
    assert.equal(405, status)
    assert.equal("id-1", json.decode(body).request_id)
    assert.equal("DELETE, GET, HEAD, POST", headers.Allow)
    assert.equal(200, (web.handle(app, "POST", "/orgs/new", nil, "id-2", nil)))
  end)

  it("sends json.array({}) of an empty list as [] with a JSON type", function()
    local app = web.router()
    app:get("/list", function() return 200, json.array({}) end)
    local status, body, headers = web.handle(app, "GET", "/list", nil, "id-2", nil)
    assert.equal(200, status)
    assert.equal("[]", body)
    assert.equal("application/json", headers["Content-Type"])
  end)
end)
