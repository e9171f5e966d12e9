-- onboarding.install: the post-install callback's body, checked field by field.
--   install.parse(doc) -> fields | nil, errors ({field = message})
-- Required: org_id, org_name, admin_email. Optional: installer_id, is_upgrade,
-- is_push, previous_version, environment (production | sandbox | custom),
-- login_domain (required for, and only for, custom). Unknown fields are refused:
-- a typo in the package's Apex should fail loudly, not onboard half an org.
local sfid = require "lib.sfid"
local trim = require("lib.text").trim
local mail = require "mc.mail"
local config = require "config"

local _M = {}

local KNOWN = {
  org_id = true, org_name = true, admin_email = true, installer_id = true, is_upgrade = true,
  is_push = true, previous_version = true, environment = true, login_domain = true,
  installer_email = true, package_version = true, nonce = true,
}
local ENVIRONMENTS = { production = true, sandbox = true, custom = true }
local LABEL = "^[a-z0-9][a-z0-9-]*$"

local function text(doc, errors, name, max, required)
  local v = doc[name]
  if v == nil or v == mc.null then
    if required then errors[name] = "is required" end
    return nil
  end
  if type(v) ~= "string" then errors[name] = "must be a string"; return nil end
  -- Postgres would refuse invalid text: a 503 and the package retrying for ever
  if not utf8.len(v) then errors[name] = "must be valid UTF-8"; return nil end
  v = trim(v)
  if v == "" then
    if required then errors[name] = "must not be blank" end
    return nil
  end
  if utf8.len(v) > max then errors[name] = "must be at most " .. max .. " characters"; return nil end
  if v:find("[%z\1-\31\127]") then errors[name] = "must not contain control characters"; return nil end
  return v
end

local function flag(doc, errors, name)
  local v = doc[name]
  if v == nil or v == mc.null then return false end
  if type(v) ~= "boolean" then errors[name] = "must be true or false"; return nil end
  return v
end

local function version(doc, errors)
  local v = doc.previous_version
  if v == nil or v == mc.null then return nil end
  if type(v) ~= "string" or #v > 32 or not v:match("^%d+%.%d+[%.%d]*$") then
    errors.previous_version = "must be a version such as 1.2 or 1.2.3"
    return nil
  end
  return v
end

-- The login host a callback may name: our client secret is posted to it, so it
-- must be Salesforce's: a My Domain (<name>.my.salesforce.com, sandboxes
-- <name>--<sandbox>.sandbox.my.salesforce.com), or under a suffix the operator
-- lists in SALESFORCE_LOGIN_DOMAINS (default "my.salesforce.com").
function _M.allowed_domain(host)
  if type(host) ~= "string" or #host > 253 then return false end
  for _, suffix in ipairs(config.get("SALESFORCE_LOGIN_DOMAINS")) do
    suffix = suffix:lower()
    if #host > #suffix + 1 and host:sub(-#suffix - 1) == "." .. suffix then
      local name = host:sub(1, -#suffix - 2)
      local ok = true
      for label in (name .. "."):gmatch("([^.]*)%.") do ok = ok and label:match(LABEL) ~= nil and #label <= 63 end
      if ok then return true end
    end
  end
  return false
end

function _M.parse(doc)
  if type(doc) ~= "table" or doc[1] ~= nil then return nil, { body = "must be a JSON object" } end
  local errors, out = {}, {}
  for k in pairs(doc) do
    if not utf8.len(k) then
      errors.body = "field names must be valid UTF-8" -- echoed, it would make our answer invalid JSON
    elseif not KNOWN[k] then
      errors[tostring(k)] = "is not a known field"
    end
  end
  local raw_id = text(doc, errors, "org_id", 18, true)
  if raw_id then
    local id, err = sfid.org_id(raw_id)
    if id then out.org_id = id else errors.org_id = err end
  end
  out.org_name = text(doc, errors, "org_name", 255, true)
  out.admin_email = text(doc, errors, "admin_email", 254, true)
  if out.admin_email and not mail.valid_address(out.admin_email) then -- the rule the mailer applies
    errors.admin_email = "must be an e-mail address"; out.admin_email = nil
  end
  local installer = text(doc, errors, "installer_id", 18)
  if installer then
    local id, err = sfid.to18(installer)
    if id and id:sub(1, 3) == "005" then
      out.installer_id = id
    else
      errors.installer_id = err or "is not a user id (005...)"
    end
  end
  out.is_upgrade = flag(doc, errors, "is_upgrade")
  out.is_push = flag(doc, errors, "is_push")
  out.previous_version = version(doc, errors)
  out.package_version = text(doc, errors, "package_version", 32)
  out.environment = text(doc, errors, "environment", 16) or "production"
  if not ENVIRONMENTS[out.environment] then
    errors.environment = "must be production, sandbox or custom"
  end
  out.login_domain = text(doc, errors, "login_domain", 253)
  if out.login_domain then
    out.login_domain = out.login_domain:lower():gsub("^https://", ""):gsub("/$", "")
    if not _M.allowed_domain(out.login_domain) then
      errors.login_domain = "must be a Salesforce My Domain host such as acme.my.salesforce.com"
    end
  end
  if out.environment == "custom" and not out.login_domain and not errors.login_domain then
    errors.login_domain = "is required when environment is custom"
  elseif out.environment ~= "custom" and out.login_domain then
    errors.login_domain = "is only allowed when environment is custom"
  end
  if next(errors) then return nil, errors end
  return out
end

return _M
