-- onboarding.notify: the mails to an org's admin, and the operator's alerts.
-- The tenant's `email` hook sees each admin message first and may change it, or
-- return false to send nothing; the operator's go to OPS_EMAIL as they are.
--   notify.send(org, kind, vars) -> message id | "suppressed" | nil, err, retryable
--   notify.operator(org, kind, vars) -> message id | "no OPS_EMAIL" | nil, err, retryable
local config = require "config"
local mail = require "mc.mail"
local messages = require "onboarding.messages"
local hooks = require "lib.hooks"

local _M = {}

function _M.send(org, kind, vars)
  vars.org_name, vars.admin_email = org.org_name, org.admin_email
  local message, err = messages.render(kind, vars)
  if not message then return nil, "mail " .. kind .. ": " .. err, false end
  local ok, hooked = hooks.run(org.tenant, "email", kind, message)
  if not ok then return nil, hooked, false end
  if hooked == false then return "suppressed" end
  if type(hooked) == "table" then message = hooked end
  if type(message.subject) ~= "string" or type(message.text) ~= "string" then
    return nil, "tenant hook email returned a message without subject and text", false
  end
  return mail.send{ to = org.admin_email, subject = message.subject, text = message.text,
    html = message.html, categories = { "onboarding", kind } }
end

function _M.operator(org, kind, vars)
  local to = config.get("OPS_EMAIL")
  if not to then return "no OPS_EMAIL" end
  vars.org_name, vars.org_id = org.org_name, org.org_id
  vars.url = config.app_url() .. "/organizations/" .. org.org_id
  local message, err = messages.render(kind, vars)
  if not message then return nil, "mail " .. kind .. ": " .. err, false end
  return mail.send{ to = to, subject = message.subject, text = message.text, html = message.html,
    categories = { "operator", kind } }
end

return _M
