-- mc.mail: sending one mail, through SMTP (libcurl, mc.http_native.smtp) or
-- SendGrid's v3 Mail Send API (mc.http).
--   local id, err, retryable = mail.send{ to = "admin@acme.example", to_name = "Ada",
--     subject = "Connect Acme", text = "...", html = "...", categories = {"onboarding"},
--     reply_to = "help@isv.example" }
-- Configuration comes from the environment at each send (mail.config()):
--   MAIL_FROM (required), MAIL_FROM_NAME, MAIL_TIMEOUT (seconds, default 15);
--   SMTP_URL (smtp://user:pass@host:587 or smtps://...; SMTP_TLS required|try|none,
--   default required: STARTTLS or fail) when set, else SendGrid at
--   SENDGRID_API_URL (default https://api.sendgrid.com) with SENDGRID_API_KEY.
-- mail.new(cfg) makes a mailer with explicit configuration (the same fields).
-- Failures return nil, err, retryable: true when sending again later may work
-- (SendGrid 429/5xx, an SMTP 4xx refusal, a timeout or lost connection), false
-- when it will not (a refused message or key, bad input, bad configuration).
local http = require "mc.http"
local native = require "mc.http_native"
local crypto = require "mc.crypto"
local json = require "mc.json"
local log = require "mc.log"
local env = require "mc.env"
local url = require "mc.url"
local mime = require "mime"
local ltn12 = require "ltn12"

local _M = {}

local DEFAULT_TIMEOUT = 15
local DEFAULT_SENDGRID_URL = "https://api.sendgrid.com"
local MAX_HEADER = 900 -- bytes of a header value: lines must stay under 998
local MAX_CATEGORIES = 10 -- SendGrid's limit
local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

-- ---- validation ----------------------------------------------------------------

-- An ASCII address, dot-atom@domain (no IDN, no quoted local parts): what both
-- transports take without SMTPUTF8, and nothing that can break a header line.
function _M.valid_address(a)
  if type(a) ~= "string" or #a > 254 then return false end
  local lpart, domain = a:match("^([%w!#$%%&'*+/=?^_`{|}~.-]+)@([%w.-]+)$")
  if not lpart or #lpart > 64 then return false end
  if lpart:find("^%.") or lpart:find("%.$") or lpart:find("%.%.") then return false end
  if not domain:find("%.") or domain:find("%.%.") or domain:find("^[.-]") or domain:find("[.-]$") then
    return false
  end
  return true
end

-- nil, or why s cannot be a header value (CR/LF would start another header).
local function header_problem(name, s)
  if type(s) ~= "string" then return name .. " must be a string" end
  if s:find("[%z\1-\31\127]") then return name .. " must not contain CR, LF or other control characters" end
  if #s > MAX_HEADER then return name .. " is too long" end
  if not utf8.len(s) then return name .. " must be UTF-8" end
  return nil
end

-- reply_to: "addr" or {email =, name =} -> {email, name} | nil, err
local function mailbox_of(v, what)
  if type(v) == "string" then v = { email = v } end
  if type(v) ~= "table" or not _M.valid_address(v.email) then return nil, what .. " is not a valid address" end
  if v.name ~= nil then
    local p = header_problem(what .. " name", v.name)
    if p then return nil, p end
  end
  return { email = v.email, name = v.name }
end

-- check(msg) -> msg normalized ({to, to_name, subject, text, html, categories,
-- reply_to}) | nil, err
local function check(msg)
  if type(msg) ~= "table" then error("mail: expected a table", 3) end
  if not _M.valid_address(msg.to) then return nil, "to is not a valid address" end
  local p = (msg.to_name ~= nil and header_problem("to_name", msg.to_name)) or header_problem("subject", msg.subject)
  if p then return nil, p end
  if msg.subject == "" then return nil, "subject is empty" end
  for _, k in ipairs({ "text", "html" }) do
    local v = msg[k]
    if v ~= nil and (type(v) ~= "string" or not utf8.len(v)) then return nil, k .. " must be a UTF-8 string" end
  end
  if (msg.text or "") == "" and (msg.html or "") == "" then return nil, "text or html is required" end
  local out = { to = msg.to, to_name = msg.to_name, subject = msg.subject,
                text = msg.text ~= "" and msg.text or nil, html = msg.html ~= "" and msg.html or nil }
  if msg.reply_to ~= nil then
    local r, err = mailbox_of(msg.reply_to, "reply_to")
    if not r then return nil, err end
    out.reply_to = r
  end
  if msg.categories ~= nil then
    if type(msg.categories) ~= "table" or #msg.categories > MAX_CATEGORIES then
      return nil, "categories must be an array of at most " .. MAX_CATEGORIES .. " strings"
    end
    for _, c in ipairs(msg.categories) do
      if type(c) ~= "string" or not c:find("^[ -~]+$") or #c > 255 then
        return nil, "categories must be printable ASCII strings of 1 to 255 characters"
      end
    end
    out.categories = msg.categories
  end
  return out
end

-- ---- configuration -----------------------------------------------------------

-- config() -> cfg from the environment | nil, err (naming the variable)
function _M.config()
  local ok, cfg = pcall(function()
    return {
      from = env.str("MAIL_FROM", false), from_name = env.get("MAIL_FROM_NAME"),
      timeout = env.number("MAIL_TIMEOUT", DEFAULT_TIMEOUT, { min = 0.001, max = 3600 }),
      smtp_url = env.get("SMTP_URL"), smtp_tls = env.enum("SMTP_TLS", { "required", "try", "none" }, "required"),
      sendgrid_url = env.get("SENDGRID_API_URL") or DEFAULT_SENDGRID_URL,
      sendgrid_key = env.get("SENDGRID_API_KEY"),
    }
  end)
  if not ok then return nil, tostring(cfg) end
  if not cfg.from then return nil, "MAIL_FROM is not set: the address mail is sent from" end
  return cfg
end

local function smtp_target(raw)
  local u, err = url.parse(raw)
  if not u then return nil, "SMTP_URL: " .. err end
  if (u.scheme ~= "smtp" and u.scheme ~= "smtps") or not u.host then
    return nil, "SMTP_URL: expected smtp://[user:password@]host[:port] or smtps://..."
  end
  return { url = u.scheme .. "://" .. u.host .. (u.port and (":" .. u.port) or ""),
           username = u.user ~= "" and u.user or nil, password = u.password }
end

local Mailer = {}
Mailer.__index = Mailer

-- new(cfg) -> mailer | nil, err. cfg: from, from_name, timeout, smtp_url,
-- smtp_tls, sendgrid_url, sendgrid_key (as config() returns).
function _M.new(cfg)
  if type(cfg) ~= "table" then error("mail.new: expected a table", 2) end
  if not _M.valid_address(cfg.from) then return nil, "MAIL_FROM is not a valid address" end
  if cfg.from_name ~= nil then
    local p = header_problem("MAIL_FROM_NAME", cfg.from_name)
    if p then return nil, p end
  end
  local self = setmetatable({ from = cfg.from, from_name = cfg.from_name, timeout = cfg.timeout or DEFAULT_TIMEOUT },
    Mailer)
  if cfg.smtp_url then
    local target, err = smtp_target(cfg.smtp_url)
    if not target then return nil, err end
    self.transport, self.smtp, self.tls = "smtp", target, cfg.smtp_tls or "required"
  else
    if not cfg.sendgrid_key then return nil, "neither SMTP_URL nor SENDGRID_API_KEY is set" end
    self.transport = "sendgrid"
    self.sendgrid_url = (cfg.sendgrid_url or DEFAULT_SENDGRID_URL):gsub("/+$", "")
    self.sendgrid_key = cfg.sendgrid_key
  end
  return self
end

-- ---- SendGrid ----------------------------------------------------------------

-- SendGrid's first error as "message (field x)".
local function sendgrid_error(res)
  local doc = res:json()
  local e = type(doc) == "table" and type(doc.errors) == "table" and doc.errors[1]
  if type(e) ~= "table" or type(e.message) ~= "string" then return "" end
  local s = e.message:sub(1, 200)
  if type(e.field) == "string" then s = s .. " (field " .. e.field .. ")" end
  return ": " .. s
end

function Mailer:send_sendgrid(m)
  local content = {}
  if m.text then content[#content + 1] = { type = "text/plain", value = m.text } end
  if m.html then content[#content + 1] = { type = "text/html", value = m.html } end
  local res, err = http.request{
    method = "POST", url = self.sendgrid_url .. "/v3/mail/send",
    headers = { Authorization = "Bearer " .. self.sendgrid_key, Accept = "application/json" },
    json = {
      personalizations = { { to = { { email = m.to, name = m.to_name } } } },
      from = { email = self.from, name = self.from_name }, reply_to = m.reply_to,
      subject = m.subject, content = content, categories = m.categories,
    },
    timeout = self.timeout, connect_timeout = math.min(self.timeout, 10),
  }
  if not res then return nil, "sendgrid: " .. err, true end
  if res.status >= 200 and res.status < 300 then
    local id = res.headers["x-message-id"]
    -- accepted, so sending again would send twice: not retryable
    if not id then return nil, "sendgrid: " .. res.status .. " without X-Message-Id", false end
    return id
  end
  local retryable = res.status == 429 or res.status == 408 or res.status >= 500
  return nil, "sendgrid: " .. res.status .. sendgrid_error(res), retryable
end

-- ---- MIME --------------------------------------------------------------------

local function quoted_printable(s)
  local out = {}
  local filter = ltn12.filter.chain(mime.normalize("\r\n"), mime.encode("quoted-printable"),
    mime.wrap("quoted-printable"))
  ltn12.pump.all(ltn12.source.chain(ltn12.source.string(s), filter), (ltn12.sink.table(out)))
  return table.concat(out)
end

-- RFC 2047 B encoded-words of at most 75 characters, split between UTF-8
-- characters, folded onto continuation lines.
local function encoded_words(s)
  local words, i = {}, 1
  while i <= #s do
    local j = math.min(i + 44, #s) -- 45 bytes: 60 base64 characters
    while j < #s and j > i and s:byte(j + 1) & 0xC0 == 0x80 do j = j - 1 end
    words[#words + 1] = "=?UTF-8?B?" .. crypto.to_base64(s:sub(i, j)) .. "?="
    i = j + 1
  end
  return table.concat(words, "\r\n ")
end

local function header_text(s)
  if s:find("^[ -~]*$") and not s:find("=?", 1, true) then return s end
  return encoded_words(s)
end

-- "Name" <addr>, the name as an atom run, a quoted string, or encoded-words
local function address_header(addr, name)
  if not name or name == "" then return "<" .. addr .. ">" end
  if name:find("^[%w!#$%%&'*+/=?^_`{|}~ -]+$") and not name:find("=?", 1, true) then
    return name .. " <" .. addr .. ">"
  end
  if name:find("^[ -~]*$") then return '"' .. name:gsub('[\\"]', "\\%0") .. '" <' .. addr .. ">" end
  return encoded_words(name) .. " <" .. addr .. ">"
end

local function rfc5322_date(t)
  local d = os.date("!*t", t)
  return string.format("%s, %02d %s %04d %02d:%02d:%02d +0000", DAYS[d.wday], d.day, MONTHS[d.month], d.year,
    d.hour, d.min, d.sec)
end

local function part(ctype, body)
  return "Content-Type: " .. ctype .. "; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    .. quoted_printable(body)
end

-- message(from, from_name, m, now?) -> the RFC 5322 message (CRLF lines) of a
-- checked mail m, and its Message-ID
function _M.message(from, from_name, m, now)
  local domain = from:match("@(.+)$")
  local message_id = "<" .. crypto.to_hex(crypto.random(16)) .. "@" .. domain .. ">"
  local h = {
    "Date: " .. rfc5322_date(now or os.time()),
    "From: " .. address_header(from, from_name),
    "To: " .. address_header(m.to, m.to_name),
    "Subject: " .. header_text(m.subject),
    "Message-ID: " .. message_id,
    "MIME-Version: 1.0",
  }
  if m.reply_to then h[#h + 1] = "Reply-To: " .. address_header(m.reply_to.email, m.reply_to.name) end
  -- SendGrid's SMTP relay reads categories from X-SMTPAPI; other relays ignore it
  if m.categories then h[#h + 1] = "X-SMTPAPI: " .. json.encode({ category = m.categories }) end
  local body
  if m.text and m.html then
    local boundary = "=_mc_" .. crypto.to_hex(crypto.random(12)) -- "=_" never occurs in QP
    h[#h + 1] = 'Content-Type: multipart/alternative; boundary="' .. boundary .. '"'
    body = "--" .. boundary .. "\r\n" .. part("text/plain", m.text) .. "\r\n--" .. boundary .. "\r\n"
      .. part("text/html", m.html) .. "\r\n--" .. boundary .. "--\r\n"
  else
    local ctype = m.text and "text/plain" or "text/html"
    h[#h + 1] = "Content-Type: " .. ctype .. "; charset=UTF-8"
    h[#h + 1] = "Content-Transfer-Encoding: quoted-printable"
    body = quoted_printable(m.text or m.html) .. "\r\n"
  end
  return table.concat(h, "\r\n") .. "\r\n\r\n" .. body, message_id
end

-- Refusals of the configuration, not of this message: sending again will not help.
local PERMANENT = { ["tls: server offers no STARTTLS"] = true, ["unsupported protocol"] = true,
                    ["malformed url"] = true, ["login denied"] = true }

function Mailer:send_smtp(m)
  local payload, message_id = _M.message(self.from, self.from_name, m)
  local ok, err, code = native.smtp{
    url = self.smtp.url, username = self.smtp.username, password = self.smtp.password,
    from = self.from, to = { m.to }, payload = payload, tls = self.tls,
    timeout = self.timeout, connect_timeout = math.min(self.timeout, 10),
  }
  if ok then return message_id end
  -- curl reports the server's refusal code: 4xx is "try later", 5xx is final
  local retryable
  if code then retryable = code < 500 else retryable = not PERMANENT[err] end
  return nil, "smtp: " .. err, retryable
end

-- ---- sending -----------------------------------------------------------------

-- mailer:send(msg) -> message id | nil, err, retryable
function Mailer:send(msg)
  local m, err = check(msg)
  if not m then return nil, "mail: " .. err, false end
  local id, retryable
  if self.transport == "smtp" then id, err, retryable = self:send_smtp(m)
  else id, err, retryable = self:send_sendgrid(m) end
  if not id then
    log.warn("mail failed", { to = m.to, subject = m.subject, transport = self.transport, err = err,
                              retryable = retryable })
    return nil, err, retryable
  end
  log.info("mail sent", { to = m.to, subject = m.subject, message_id = id, transport = self.transport })
  return id
end

-- send(msg) -> message id | nil, err, retryable, configured from the environment
function _M.send(msg)
  local cfg, err = _M.config()
  if not cfg then return nil, "mail: " .. err, false end
  local mailer
  mailer, err = _M.new(cfg)
  if not mailer then return nil, "mail: " .. err, false end
  return mailer:send(msg)
end

return _M
