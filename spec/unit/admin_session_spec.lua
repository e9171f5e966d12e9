-- admin.session and lib.cursor: the dashboard's signed cookie, its CSRF token
-- and flash, and the listing's signed cursors, in-process. Each refuses what
-- it did not make, and everything is keyed on ADMIN_TOKEN.
local session = require "admin.session"
local cursor = require "lib.cursor"
local operator = require "lib.operator"
local host = require "mc.host"
local env_vars = require "support.env_vars"
local web_request = require "support.web_request"

local TOKEN = "spec-admin-token-0123456789"

describe("admin.session", function()
  local config = env_vars.layered({ ADMIN_TOKEN = TOKEN, APP_URL = "https://mc.example", ADMIN_SESSION_TTL = "600" })
  before_each(function() config:set() end)
  after_each(function() config:restore() end)

  local function req(cookie) return web_request.new{ headers = { Cookie = cookie } } end
  local function value(set_cookie) return set_cookie:match("^([^;]+)") end

  it("issues a cookie that reads back, with every attribute, Secure under https", function()
    local set = session.issue()
    assert.matches("^mc_admin=v1%.%d+%.[%w_%-]+%.[%w_%-]+; "
      .. "Path=/admin; Max%-Age=600; HttpOnly; SameSite=Strict; Secure$", set)
    local s = assert(session.current(req("other=1; " .. value(set) .. "; x=y")))
    assert.is_true(s.expires > host.time() + 590 and s.expires <= host.time() + 600)
    assert.is_nil(set:find(TOKEN, 1, true))
    config:set({ APP_URL = "http://localhost:5000" })
    assert.is_nil(session.issue():find("Secure", 1, true))
  end)

  it("refuses no cookie, an edited one, an expired one, and one made under another ADMIN_TOKEN", function()
    local v = value(session.issue())
    assert.same({ nil, "no session" }, { session.current(req(nil)) })
    local edited = v:gsub("v1%.(%d+)", function(e) return "v1." .. (tonumber(e) + 1) end)
    assert.same({ nil, "bad session" }, { session.current(req(edited)) })
    assert.same({ nil, "bad session" }, { session.current(req(v .. "x")) })
    config:set({ ADMIN_SESSION_TTL = "60" })
    local short = value(session.issue())
    local real = host.time
    host.time = function() return real() + 61 end -- luacheck: ignore
    local ok, why = session.current(req(short))
    host.time = real -- luacheck: ignore
    assert.same({ nil, "expired" }, { ok, why })
    config:set({ ADMIN_TOKEN = "another-admin-token-0123456789" })
    assert.same({ nil, "bad session" }, { session.current(req(v)) })
  end)

  it("ties the CSRF token to its session", function()
    local a = assert(session.current(req(value(session.issue()))))
    local b = assert(session.current(req(value(session.issue()))))
    assert.is_true(session.csrf_ok(a, session.csrf(a)))
    assert.is_false(session.csrf_ok(a, session.csrf(b)))
    assert.is_false(session.csrf_ok(a, nil))
    assert.is_false(session.csrf_ok(a, { session.csrf(a) }))
  end)

  it("carries a flash message once, and drops a forged one", function()
    local text, clear = session.take_flash(req(value(session.flash("Resume: done <b>"))))
    assert.equal("Resume: done <b>", text)
    assert.matches("^mc_admin_flash=; Path=/admin; Max%-Age=0", clear)
    local forged, clear2 = session.take_flash(req("mc_admin_flash=SGk.AAAA"))
    assert.is_nil(forged)
    assert.truthy(clear2)
  end)
end)

describe("lib.cursor", function()
  local key = "k" .. string.rep("x", 31)

  it("gives back the position it encoded, for the same scope only", function()
    local c = cursor.encode(key, { "2024-01-02 03:04:05.123456+00", "00D000000000001AAA" }, "sort=a")
    assert.matches("^[%w_%-]+%.[%w_%-]+$", c)
    assert.same({ "2024-01-02 03:04:05.123456+00", "00D000000000001AAA" }, cursor.decode(key, c, "sort=a"))
    assert.same({ nil, "is not one this listing gave (or its filters or sort changed)" },
      { cursor.decode(key, c, "sort=b") })
    assert.is_nil(cursor.decode("another key", c, "sort=a"))
    assert.same({ nil, "is malformed" }, { cursor.decode(key, "no-dot", "sort=a") })
  end)

  it("keys cursors on ADMIN_TOKEN through lib.operator", function()
    local restore = env_vars.set({ ADMIN_TOKEN = TOKEN })
    local a = operator.key("cursor")
    restore()
    restore = env_vars.set({ ADMIN_TOKEN = false })
    local none = operator.key("cursor")
    restore()
    assert.equal(32, #a)
    assert.is_nil(none)
  end)
end)
