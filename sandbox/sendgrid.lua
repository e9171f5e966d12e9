-- sandbox.sendgrid: SendGrid v3 Mail Send (docs/external-apis.md §4), and a mailbox that keeps
-- what was sent so a test (or a simulated admin) can read it and follow its links.
--   POST   /v3/mail/send   202, empty body, X-Message-Id; 200 in sandbox mode
--   GET    /__mailbox      the received messages, oldest first (?to=address)
--   DELETE /__mailbox      empties it
-- Errors are {"errors":[{"message","field","help"}]}: 400 validation, 401 bad or
-- missing key (knob api_key pins the one accepted), 403 from address not verified
-- (knob verified_senders: addresses or "@domain"), 406 Accept without JSON,
-- 413 body over knob max_bytes, 429 over knob rate_limit per knob rate_window.
local json = require "mc.json"
local crypto = require "mc.crypto"
local host = require "mc.host"
local store = require "sandbox.store"
local faults = require "sandbox.faults"
local ratelimit = require "sandbox.ratelimit"

local _M = {}

local HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
local EMAIL = "^[^%s@<>]+@[^%s@<>]+%.[^%s@<>]+$"
local MAILBOX = "mailbox"

local function errors(status, list, headers)
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  for _, e in ipairs(list) do
    if e.field == nil then e.field = json.null end
    if e.help == nil then e.help = json.null end
  end
  return status, { errors = list }, h
end

local function fault(status)
  return errors(status, { { message = "The sandbox injected this failure." } })
end

-- ---- validation --------------------------------------------------------------

local function valid_email(e)
  return type(e) == "table" and type(e.email) == "string" and e.email:match(EMAIL) ~= nil
end

local function check_recipients(p, i, add, seen)
  local base = "personalizations." .. (i - 1)
  if type(p.to) ~= "table" or #p.to == 0 then
    add(base .. ".to", "The to array is required for all personalization objects, "
      .. "and must have at least one email object with a valid email address.", "personalizations.to")
    return 0
  end
  local n = 0
  for _, kind in ipairs({ "to", "cc", "bcc" }) do
    for j, e in ipairs(type(p[kind]) == "table" and p[kind] or {}) do
      local field = base .. "." .. kind .. "." .. (j - 1) .. ".email"
      if not valid_email(e) then
        add(field, "Does not contain a valid address.", "personalizations." .. kind)
      else
        local addr = e.email:lower()
        if seen[addr] then
          add(base .. "." .. kind, "Each email address in the personalization block should be unique "
            .. "between to, cc, and bcc. We found the first duplicate instance of [" .. e.email
            .. "] in the " .. base .. "." .. kind .. " field.", "personalizations")
        end
        seen[addr] = true
      end
      n = n + 1
    end
  end
  return n
end

local function check_content(body, add)
  if body.content == nil then
    if not body.template_id then
      add("content", "Unless a valid template_id is provided, the content parameter is required. "
        .. "There must be at least one defined content block. We typically suggest both text/plain "
        .. "and text/html blocks are included, but only one block is required.", "content")
    end
    return
  end
  if type(body.content) ~= "table" or #body.content == 0 then
    add("content", "The content parameter must be an array with at least one content block.", "content")
    return
  end
  for i, c in ipairs(body.content) do
    local base = "content." .. (i - 1)
    if type(c.type) ~= "string" or c.type == "" then
      add(base .. ".type", "The content type must be a string at least one character in length.", "content.type")
    elseif c.type == "text/plain" and i ~= 1 then
      add(base .. ".type", "If present, text/plain content must be first, followed by text/html, "
        .. "followed by any other content.", "content.type")
    end
    if type(c.value) ~= "string" or c.value == "" then
      add(base .. ".value", "The content value must be a string at least one character in length.", "content.value")
    end
  end
end

local function check_attachments(body, add)
  if body.attachments == nil then return end
  for i, a in ipairs(type(body.attachments) == "table" and body.attachments or {}) do
    local base = "attachments." .. (i - 1)
    if type(a.content) ~= "string" or not crypto.from_base64(a.content) then
      add(base .. ".content", "The attachment content must be base64 encoded.", "attachments.content")
    end
    if type(a.filename) ~= "string" or a.filename == "" then
      add(base .. ".filename", "The attachment filename parameter is required.", "attachments.filename")
    end
  end
end

-- validate(body) -> list of {field, message, help} (empty when the mail is good)
local function validate(body)
  local list = {}
  local function add(field, message, anchor)
    list[#list + 1] = { field = field, message = message, help = HELP .. anchor }
  end
  local ps = body.personalizations
  if type(ps) ~= "table" or #ps == 0 then
    add("personalizations",
      "The personalizations field is required and must have at least one personalization.", "personalizations")
    ps = {}
  elseif #ps > 1000 then
    add("personalizations", "The personalizations field is limited to 1000 objects.", "personalizations")
  end
  local total, every_subject = 0, #ps > 0
  for i, p in ipairs(ps) do
    if type(p) ~= "table" then p = {} end
    total = total + check_recipients(p, i, add, {})
    if type(p.subject) ~= "string" or p.subject == "" then every_subject = false end
  end
  if total > 1000 then
    add("personalizations", "The total number of recipients must be no more than 1000.", "personalizations")
  end
  if type(body.from) ~= "table" then
    add("from", "The from object must be provided for every email send. It is an object that "
      .. "requires an email parameter, but may also contain a name parameter.", "from")
  elseif not valid_email(body.from) then
    add("from.email", "The from email does not contain a valid address.", "from")
  end
  if body.reply_to ~= nil and not valid_email(body.reply_to) then
    add("reply_to.email", "The reply_to email does not contain a valid address.", "reply_to")
  end
  if (type(body.subject) ~= "string" or body.subject == "") and not every_subject and not body.template_id then
    add("subject", "The subject is required. You can get around this requirement if you use a template "
      .. "with a subject defined or if every personalization has a subject defined.", "subject")
  end
  check_content(body, add)
  check_attachments(body, add)
  return list
end

local function verified(from)
  local senders = store.knob("sendgrid", "verified_senders")
  if type(senders) ~= "table" then return true end
  local addr = from:lower()
  for _, s in ipairs(senders) do
    s = tostring(s):lower()
    if s == addr or (s:sub(1, 1) == "@" and addr:sub(-#s) == s) then return true end
  end
  return false
end

-- ---- the mailbox -------------------------------------------------------------

local function unescape_html(s)
  return (s:gsub("&amp;", "&"):gsub("&#38;", "&"):gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"))
end

-- links(contents) -> the URLs found in href/src attributes and in plain text, each once, in order
function _M.links(contents)
  local out, seen = {}, {}
  local function add(u)
    u = unescape_html(u):gsub("[%.,;:!%?%)]+$", "")
    if not seen[u] then seen[u] = true; out[#out + 1] = u end
  end
  for _, c in ipairs(contents) do
    local v = c.value
    if c.type == "text/html" then
      for _, q in ipairs({ '"', "'" }) do
        for u in v:gmatch("[Hh][Rr][Ee][Ff]%s*=%s*" .. q .. "([^" .. q .. "]+)" .. q) do
          if u:match("^https?://") then add(u) end
        end
      end
      v = v:gsub("<[^>]*>", " ") -- then URLs written as text
    end
    for u in v:gmatch("https?://[^%s<>\"']+") do add(u) end
  end
  return out
end

local function substitute(s, subs)
  if type(s) ~= "string" or type(subs) ~= "table" then return s end
  for k, v in pairs(subs) do
    s = s:gsub(k:gsub("%p", "%%%0"), (tostring(v):gsub("%%", "%%%%")))
  end
  return s
end

local function addresses(list)
  local out = {}
  for _, e in ipairs(type(list) == "table" and list or {}) do out[#out + 1] = e.email end
  return json.array(out)
end

-- The simulated admin (sandbox/admin.lua, a process of its own) reads the message
-- from its queue; one is started when none runs for this sandbox.
local function admin_reads(raw)
  store.call("RPUSH", store.key("sendgrid", "admin", "queue"), raw)
  if store.call("SET", store.key("sendgrid", "admin", "reader"), "starting", "NX", "EX", 5) == mc.null then return end
  local pid = host.pid()
  local function q(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end
  os.execute(string.format("%s run %s %s >/dev/null 2>&1 &", q(host.exe), q(host.root .. "/sandbox/admin.lua"),
    q(pid)))
end

-- One message per personalization, as SendGrid sends one email for each.
local function deliver(body, message_id)
  local now = host.time()
  for i, p in ipairs(body.personalizations) do
    local contents = {}
    for _, c in ipairs(body.content or {}) do
      contents[#contents + 1] = { type = c.type, value = substitute(c.value, p.substitutions) }
    end
    local headers = {}
    for k, v in pairs(type(body.headers) == "table" and body.headers or {}) do headers[k] = v end
    for k, v in pairs(type(p.headers) == "table" and p.headers or {}) do headers[k] = v end
    local msg = {
      id = message_id .. "." .. (i - 1), message_id = message_id,
      to = addresses(p.to), cc = addresses(p.cc), bcc = addresses(p.bcc),
      from = body.from, reply_to = body.reply_to,
      subject = substitute(p.subject or body.subject, p.substitutions),
      content = json.array(contents), headers = headers,
      template_id = body.template_id, dynamic_template_data = p.dynamic_template_data,
      categories = body.categories, custom_args = p.custom_args or body.custom_args,
      send_at = p.send_at or body.send_at, attachments = body.attachments,
      links = json.array(_M.links(contents)),
      received_at = store.iso8601(now),
    }
    for _, c in ipairs(contents) do
      if c.type == "text/plain" and not msg.text then msg.text = c.value end
      if c.type == "text/html" and not msg.html then msg.html = c.value end
    end
    local raw = json.encode(msg)
    store.call("RPUSH", store.key("sendgrid", MAILBOX), raw)
    if store.knob("sendgrid", "simulated_admin", false) then admin_reads(raw) end
  end
end

local ARRAYS = { "to", "cc", "bcc", "content", "links" }

local function mailbox(req)
  local to = req.query.to
  to = type(to) == "string" and to:lower() or nil
  local out = {}
  for _, raw in ipairs(store.call("LRANGE", store.key("sendgrid", MAILBOX), 0, -1)) do
    local msg = json.decode(raw)
    local match = not to
    for _, kind in ipairs({ "to", "cc", "bcc" }) do
      for _, a in ipairs(msg[kind]) do if a:lower() == to then match = true end end
    end
    for _, k in ipairs(ARRAYS) do msg[k] = json.array(msg[k]) end
    if match then out[#out + 1] = msg end
  end
  return 200, json.array(out)
end

-- ---- mail send ---------------------------------------------------------------

local function send(req)
  local key = (req.headers["authorization"] or ""):match("^[Bb]earer%s+(%S+)$")
  local pinned = store.knob("sendgrid", "api_key")
  if not key or (pinned and key ~= pinned) then
    return errors(401, { { message = "The provided authorization grant is invalid, expired, or revoked" } })
  end
  local limit = tonumber(store.knob("sendgrid", "rate_limit", 10000))
  local window = tonumber(store.knob("sendgrid", "rate_window", 1))
  local ok, remaining, reset = ratelimit.spend("sendgrid", key, limit, window)
  local headers = { ["X-RateLimit-Limit"] = limit, ["X-RateLimit-Remaining"] = remaining,
                    ["X-RateLimit-Reset"] = math.floor(reset) }
  if not ok then return errors(429, { { message = "too many requests" } }, headers) end
  local accept = req.headers["accept"]
  if accept and not (accept:find("application/json", 1, true) or accept:find("*/*", 1, true)
      or accept:find("application/*", 1, true)) then
    return errors(406, { { message = "Not Acceptable" } }, headers)
  end
  if #req.body > tonumber(store.knob("sendgrid", "max_bytes", 30 * 1024 * 1024)) then
    return errors(413, { { message = "Payload Too Large" } }, headers)
  end
  local body = req.json()
  if type(body) ~= "table" then
    return errors(400, { { message = "Bad Request" } }, headers)
  end
  local list = validate(body)
  if #list > 0 then return errors(400, list, headers) end
  if not verified(body.from.email) then
    return errors(403, { { field = "from", help = json.null,
      message = "The from address does not match a verified Sender Identity. Mail cannot be sent "
        .. "until this error is resolved. Visit "
        .. "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ "
        .. "to see the Sender Identity requirements" } }, headers)
  end
  local settings = type(body.mail_settings) == "table" and body.mail_settings or {}
  if type(settings.sandbox_mode) == "table" and settings.sandbox_mode.enable == true then
    return 200, "", headers
  end
  local message_id = crypto.to_base64url(crypto.random(16)):sub(1, 22)
  deliver(body, message_id)
  headers["X-Message-Id"] = message_id
  return 202, "", headers
end

function _M.mount(app, prefix)
  app:post(prefix .. "/v3/mail/send", faults.wrap("sendgrid", send, fault))
  app:get(prefix .. "/__mailbox", mailbox)
  app:delete(prefix .. "/__mailbox", function()
    store.call("DEL", store.key("sendgrid", MAILBOX))
    return 204
  end)
end

return _M
