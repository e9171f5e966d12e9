-- sandbox/admin.lua MESSAGE_ID: the simulated org admin. Run by the SendGrid
-- stand-in (as its own process, so that no server thread waits on the chain of
-- redirects a link may start) when knob sendgrid.simulated_admin is on: reads the
-- message from the mailbox and follows each of its links whose URL matches knob
-- sendgrid.admin_follow (a Lua pattern; default: every link) as a browser would,
-- redirects included, after knob sendgrid.admin_delay seconds. What happened is
-- kept in sandbox:sendgrid:admin (GET /__sandbox/state shows it).
-- The admin is the mail's (first) recipient, logged in to Salesforce as that user:
-- every request, redirects included, carries X-Sandbox-Login: <recipient>, which the
-- Salesforce and Connect authorize pages take as the browser's session. (It stands
-- for Salesforce's session cookie; a custom header is what libcurl keeps sending
-- across hosts and ports, where it drops Cookie and Authorization.)
local host = require "mc.host"
package.path = host.root .. "/?.lua;" .. package.path
local store = require "sandbox.store"
local http = require "mc.http"
local json = require "mc.json"
local log = require "mc.log"

local id = ...
if not id then return nil, "usage: admin.lua MESSAGE_ID" end

local function find(message_id)
  for _, raw in ipairs(store.call("LRANGE", store.key("sendgrid", "mailbox"), 0, -1)) do
    local msg = json.decode(raw)
    if msg and msg.id == message_id then return msg end
  end
end

local msg = find(id)
if not msg then return nil, "no message " .. id end
host.sleep(tonumber(store.knob("sendgrid", "admin_delay", 0)) or 0)
local pattern = store.knob("sendgrid", "admin_follow", "")
local login = (msg.to or {})[1]
for _, link in ipairs(msg.links or {}) do
  if link:find(pattern) then
    local res, err = http.get(link, { follow = 10, timeout = 30, headers = { ["X-Sandbox-Login"] = login } })
    local record = { message = id, link = link, login = login or mc.null, status = res and res.status or mc.null,
                     error = err or mc.null }
    store.call("RPUSH", store.key("sendgrid", "admin"), json.encode(record))
    log.info("simulated admin followed a link", { message = id, link = link, status = record.status, error = err })
  end
end
return 0
