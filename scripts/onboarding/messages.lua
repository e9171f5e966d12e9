-- onboarding.messages: the mails of the onboarding, rendered from templates under
-- scripts/onboarding/mail/: <kind>.txt (first line "Subject: ...", then the text
-- body) and <kind>.html, both mc.template templates (${var}; escaped in HTML).
--   local m, err = messages.render("authenticate", { org_name = "Acme", admin_email = "a@acme.example",
--     url = "https://app.example/authenticate?org=00D..." })
--   --> { subject = "Connect Acme to ...: sign in to Salesforce", text = "...", html = "..." }
-- Every template also sees `service`: vars.service, else SERVICE_NAME, else "multiconnect".
-- Templates are read at each render (no cache), so edits apply at once.
local template = require "mc.template"
local config = require "config"
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

-- The variables each kind needs; `url` must be an http(s) URL (it becomes an href).
local KINDS = {
  authenticate = { "org_name", "admin_email", "url" },
  authorize_connect = { "org_name", "url" },
  active = { "org_name", "schema_name" },
  failed = { "org_name", "step", "reason" },
  reauthorize = { "org_name", "url" },
  degraded = { "org_name", "reason" },
  -- to the operator (OPS_EMAIL), not the org's admin
  operator_degraded = { "org_name", "org_id", "reason", "action", "url" },
  operator_failed = { "org_name", "org_id", "step", "reason", "command", "url" },
}

-- The template's vars: the caller's, checked, plus service.
local function variables(kind, vars)
  local out = {}
  for k, v in pairs(vars) do out[k] = v end
  for _, name in ipairs(KINDS[kind]) do
    local v = vars[name]
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" or v == "" then return nil, kind .. " needs " .. name end
    -- one line, as subjects and names are (a reason may span lines)
    if name ~= "reason" and v:find("[%c]") then return nil, kind .. ": " .. name .. " must be one line" end
    out[name] = v
  end
  if out.url and not out.url:match("^https?://[^%s]+$") then
    return nil, kind .. ": url must be an http(s) URL"
  end
  out.service = vars.service or config.get("SERVICE_NAME") or "multiconnect"
  return out
end

-- "Subject: ...\n[\n]body" -> subject, body
local function split_subject(kind, text)
  local subject, body = text:match("^Subject:[ \t]*([^\r\n]*)\r?\n(.*)$")
  if not subject then return nil, kind .. ".txt: the first line must be \"Subject: ...\"" end
  subject = subject:match("^(.-)%s*$")
  if subject == "" then return nil, kind .. ".txt: the subject is empty" end
  return subject, (body:gsub("^\r?\n", ""))
end

-- render(kind, vars) -> {subject, text, html} | nil, err
function _M.render(kind, vars)
  if KINDS[kind] == nil then return nil, "unknown message kind " .. tostring(kind) end
  if type(vars) ~= "table" then error("messages.render: vars must be a table", 2) end
  local v, err = variables(kind, vars)
  if not v then return nil, err end
  local dir = host.root .. "/scripts/onboarding/mail/"
  local out = {}
  for _, ext in ipairs({ "txt", "html" }) do
    local src, rerr = file.read(dir .. kind .. "." .. ext)
    if not src then return nil, rerr end
    local s, terr = template.render(src, v, { html = ext == "html", name = kind .. "." .. ext })
    if not s then return nil, terr end
    out[ext] = s
  end
  local subject, text = split_subject(kind, out.txt)
  if not subject then return nil, text end
  return { subject = subject, text = text, html = out.html }
end

_M.KINDS = KINDS

return _M
