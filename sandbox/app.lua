-- The sandbox: local stand-ins for the external services, served by
-- `multiconnect sandbox` on one port, each under its own path prefix (so a base
-- URL such as HEROKU_API_URL=http://127.0.0.1:5100/heroku points clients at it).
-- Their contract is docs/external-apis.md; their state lives in Redis
-- (keys sandbox:*), shared by every server thread.
local host = require "mc.host"
package.path = host.root .. "/?.lua;" .. package.path -- sandbox.* modules

local web = require "mc.web"
local json = require "mc.json"
local crypto = require "mc.crypto"
local store = require "sandbox.store"

-- SANDBOX_CONFIG (a JSON document of knobs, as POST /__sandbox/config takes) is
-- merged once per value: the knobs live in Redis (persisted), so a restarted or
-- reloaded sandbox keeps what the endpoint changed since; a new SANDBOX_CONFIG,
-- or a reset, applies it again. A malformed one stops the sandbox from starting.
local knobs = os.getenv("SANDBOX_CONFIG")
if knobs and knobs ~= "" then
  local doc, err = json.decode(knobs)
  local ok, merr = type(doc) == "table", "not a JSON object: " .. tostring(err)
  local applied = store.key("config:applied")
  local digest = crypto.to_hex(crypto.sha256(knobs))
  if ok and store.call("GET", applied) ~= digest then
    ok, merr = store.merge(doc)
    if ok then store.call("SET", applied, digest) end
  end
  if not ok then
    io.stderr:write("multiconnect sandbox: SANDBOX_CONFIG: ", merr, "\n")
    error("SANDBOX_CONFIG: " .. merr, 0)
  end
end

local app = web.router()

require("sandbox.control").mount(app, "/__sandbox")
require("sandbox.heroku").mount(app, "/heroku")
require("sandbox.salesforce").mount(app, "/salesforce")             -- login.salesforce.com
require("sandbox.salesforce").mount(app, "/salesforce-test", "sandbox") -- test.salesforce.com
require("sandbox.sendgrid").mount(app, "/sendgrid")
require("sandbox.x").mount(app, "/x")
require("sandbox.mastodon").mount(app, "/mastodon")
require("sandbox.connect").mount(app, "/connect")

return app
