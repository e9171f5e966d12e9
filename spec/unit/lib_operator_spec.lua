-- lib.operator: `Authorization: Bearer <ADMIN_TOKEN>` for the operator's
-- endpoints; without a configured token nobody gets in.
local operator = require "lib.operator"
local env_vars = require "support.env_vars"
local web_request = require "support.web_request"

local TOKEN = "spec-admin-token-0123456789"
local REQUIRED = { error = "operator credentials required (Authorization: Bearer <ADMIN_TOKEN>)" }
local CHALLENGE = { ["WWW-Authenticate"] = 'Bearer realm="multiconnect"' }

describe("lib.operator", function()
  local config = env_vars.layered({ ADMIN_TOKEN = TOKEN })
  before_each(function() config:set() end)
  after_each(function() config:restore() end)

  local function check(authorization)
    return { operator.check(web_request.new{ headers = { Authorization = authorization } }) }
  end

  it("lets in the configured token, as Bearer or bearer, with any spacing", function()
    assert.same({ true }, check("Bearer " .. TOKEN))
    assert.same({ true }, check("bearer " .. TOKEN))
    assert.same({ true }, check("Bearer \t " .. TOKEN))
  end)

  it("401 with a Bearer challenge for no header, another token, another scheme, trailing words", function()
    for _, auth in ipairs({ false, "Bearer " .. TOKEN .. "x", "Bearer " .. TOKEN:sub(1, -2), "Basic " .. TOKEN,
      TOKEN, "Bearer " .. TOKEN .. " extra", "Bearer ", "BEARER " .. TOKEN }) do
      assert.same({ nil, 401, REQUIRED, CHALLENGE }, check(auth or nil), tostring(auth))
    end
  end)

  it("401, operator access disabled, when ADMIN_TOKEN is unset: even an empty bearer gets nothing", function()
    config:set({ ADMIN_TOKEN = false })
    local disabled = { nil, 401,
      { error = "operator access is disabled: ADMIN_TOKEN is not set" } }
    assert.same(disabled, check("Bearer " .. TOKEN))
    assert.same(disabled, check(nil))
  end)

  it("a configured token shorter than 16 characters is a misconfiguration: "
    .. "it raises (config.check refuses it at start)", function()
    config:set({ ADMIN_TOKEN = "short-token" })
    local req = web_request.new{ headers = { Authorization = "Bearer short-token" } }
    assert.has_error(function() operator.check(req) end,
      "ADMIN_TOKEN: expected at least 16 characters, got 11")
  end)
end)
