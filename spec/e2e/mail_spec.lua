-- mc.mail against the sandbox's SendGrid (Redis db 4) and against a real SMTP
-- server (spec/support/smtp_sink.lua, a process of its own).
local sandbox = require "support.sandbox"
local daemon = require "support.daemon"
local server = require "support.server"
local proc = require "support.process"
local mail = require "mc.mail"
local http = require "mc.http"
local json = require "mc.json"
local host = require "mc.host"
local crypto = require "mc.crypto"
local mime = require "mime"

local FROM = "onboarding@isv.test"

describe("mc.mail", function()
  describe("through SendGrid (the sandbox)", function()
    local sb, root, mailer

    local function knobs(doc)
      assert.equal(200, assert(http.post(root .. "/__sandbox/config", { json = { sendgrid = doc } })).status)
    end
    local function mailbox()
      local res = assert(http.get(root .. "/sendgrid/__mailbox"))
      assert.equal(200, res.status)
      return assert(res:json())
    end
    local function message(over)
      local m = { to = "admin@acme.test", to_name = "Ada Admin", subject = "Connect Acme",
                  text = "Sign in: https://app.test/start?org=1",
                  html = '<p><a href="https://app.test/start?org=1">Sign in</a></p>',
                  categories = { "onboarding" }, reply_to = "help@isv.test" }
      for k, v in pairs(over or {}) do m[k] = v end
      return m
    end

    setup(function()
      sb, root = sandbox.start(4)
      mailer = assert(mail.new{ from = FROM, from_name = "ISV Onboarding", sendgrid_url = root .. "/sendgrid/",
                                sendgrid_key = "SG.spec-key", timeout = 5 })
    end)
    teardown(function() sb:stop() end)
    before_each(function()
      assert.equal(204, assert(http.post(root .. "/__sandbox/reset")).status)
    end)

    it("sends a mail with its text and HTML parts and returns SendGrid's message id", function()
      local id, err = mailer:send(message())
      assert.is_nil(err)
      local box = mailbox()
      assert.equal(1, #box)
      local got = box[1]
      assert.equal(id, got.message_id)
      assert.same({ "admin@acme.test" }, got.to)
      assert.same({ email = FROM, name = "ISV Onboarding" }, got.from)
      assert.same({ email = "help@isv.test" }, got.reply_to)
      assert.equal("Connect Acme", got.subject)
      assert.same({ "onboarding" }, got.categories)
      assert.equal("text/plain", got.content[1].type) -- text first, as SendGrid requires
      assert.equal("text/html", got.content[2].type)
      assert.equal("Sign in: https://app.test/start?org=1", got.text)
      assert.matches('href="https://app.test/start%?org=1"', got.html)
      assert.same({ "https://app.test/start?org=1" }, got.links)
    end)

    it("sends a text-only mail", function()
      assert(mailer:send(message({ html = "" })))
      local got = mailbox()[1]
      assert.equal(1, #got.content)
      assert.equal("text/plain", got.content[1].type)
    end)

    it("reports a 400 with SendGrid's message, not retryable", function()
      knobs({ fail_next = 1, fail_status = 400 })
      local id, err, retryable = mailer:send(message())
      assert.is_nil(id)
      assert.equal("sendgrid: 400: The sandbox injected this failure.", err)
      assert.is_false(retryable)
    end)

    it("reports a refused key (401) with SendGrid's message, not retryable", function()
      knobs({ api_key = "SG.another-key" })
      local id, err, retryable = mailer:send(message())
      assert.is_nil(id)
      assert.equal("sendgrid: 401: The provided authorization grant is invalid, expired, or revoked", err)
      assert.is_false(retryable)
    end)

    it("names the field of an error (403 unverified sender), not retryable", function()
      knobs({ verified_senders = { "@other.test" } })
      local id, err, retryable = mailer:send(message())
      assert.is_nil(id)
      assert.matches("^sendgrid: 403: The from address does not match a verified Sender Identity", err)
      assert.matches("%(field from%)$", err)
      assert.is_false(retryable)
    end)

    it("reports a 413 as not retryable", function()
      knobs({ max_bytes = 100 })
      local _, err, retryable = mailer:send(message())
      assert.equal("sendgrid: 413: Payload Too Large", err)
      assert.is_false(retryable)
    end)

    it("reports a 429 as retryable", function()
      knobs({ rate_limit = 1, rate_window = 3600 })
      assert(mailer:send(message()))
      local id, err, retryable = mailer:send(message())
      assert.is_nil(id)
      assert.equal("sendgrid: 429: too many requests", err)
      assert.is_true(retryable)
      assert.equal(1, #mailbox())
    end)

    it("reports a 500 as retryable", function()
      knobs({ fail_next = 1, fail_status = 500 })
      local id, err, retryable = mailer:send(message())
      assert.is_nil(id)
      assert.matches("^sendgrid: 500", err)
      assert.is_true(retryable)
    end)

    it("reports a timeout as retryable", function()
      local slow = assert(mail.new{ from = FROM, sendgrid_url = root .. "/sendgrid", sendgrid_key = "SG.k",
                                    timeout = 0.5 })
      knobs({ timeout = 2 })
      local id, err, retryable = slow:send(message())
      assert.is_nil(id)
      assert.equal("sendgrid: timeout", err)
      assert.is_true(retryable)
    end)

    it("refuses header injection and bad addresses before sending anything", function()
      local cases = {
        { subject = "Hi\r\nBcc: victim@evil.test" }, { subject = "Hi\nBcc: victim@evil.test" },
        { to_name = "Ada\r\nBcc: victim@evil.test" }, { to = "admin@acme.test\r\nBcc: victim@evil.test" },
        { to = "admin@acme.test>, <victim@evil.test" }, { to = "not an address" },
        { reply_to = "help@isv.test\nBcc: x@evil.test" }, { reply_to = { email = "h@isv.test", name = "a\rb" } },
        { categories = { "a\nb" } }, { text = "", html = "" }, { subject = "" },
      }
      for _, over in ipairs(cases) do
        local id, err, retryable = mailer:send(message(over))
        assert.is_nil(id)
        assert.matches("^mail: ", err)
        assert.is_false(retryable)
      end
      assert.same({}, mailbox())
    end)

    it("is configured from the environment, and names MAIL_FROM when it is missing", function()
      local dir, cleanup = proc.tmpdir()
      local script = proc.write(dir .. "/send.lua", [[
        print(mc.mail.send{ to = "admin@acme.test", subject = "Env", text = "hello" })
      ]])
      local env = { MAIL_FROM = FROM, SENDGRID_API_URL = root .. "/sendgrid", SENDGRID_API_KEY = "SG.env",
                    SMTP_URL = false }
      local r = proc.mc({ "run", script }, { env = env })
      assert.equal(0, r.code, r.stderr)
      local id = r.stdout:match("mail sent.-message_id=(%S+)")
      assert.truthy(id, r.stdout)
      assert.equal(id, mailbox()[1].message_id)
      assert.matches("to=admin@acme.test", r.stdout)
      assert.not_matches("hello", r.stdout) -- the body is never logged
      env.MAIL_FROM = false
      r = proc.mc({ "run", script }, { env = env })
      assert.matches("mail: MAIL_FROM is not set", r.stdout)
      env.MAIL_FROM, env.SENDGRID_API_KEY = FROM, false
      r = proc.mc({ "run", script }, { env = env })
      assert.matches("mail: neither SMTP_URL nor SENDGRID_API_KEY is set", r.stdout)
      cleanup()
    end)
  end)

  describe("through SMTP", function()
    local sink, port, record

    local function records()
      local out = {}
      local f = io.open(record)
      if not f then return out end
      for line in f:lines() do out[#out + 1] = assert(json.decode(line)) end
      f:close()
      return out
    end
    local function mailer(over)
      local cfg = { from = FROM, from_name = "ISV Onboarding", smtp_url = "smtp://apikey:s%40cret@127.0.0.1:" .. port,
                    smtp_tls = "try", timeout = 5 }
      for k, v in pairs(over or {}) do cfg[k] = v end
      return assert(mail.new(cfg))
    end
    -- headers (unfolded) and body of a raw message
    local function parse(data)
      local head, body = data:match("^(.-)\r\n\r\n(.*)$")
      local headers = {}
      for name, value in (head:gsub("\r\n[ \t]", " ") .. "\r\n"):gmatch("([%w-]+): (.-)\r\n") do
        headers[name:lower()] = value
      end
      return headers, body
    end
    local function decode_words(s)
      s = s:gsub("%?=%s+=%?", "?==?") -- white space between encoded-words is not text
      return (s:gsub("=%?UTF%-8%?B%?(.-)%?=", function(b64) return crypto.from_base64(b64) end))
    end
    local function parts(headers, body)
      local boundary = assert(headers["content-type"]:match('boundary="(.-)"'))
      local out = {}
      local delimiter = "\r\n--" .. boundary
      local rest = assert(("\r\n" .. body):match("^.-" .. delimiter:gsub("%p", "%%%0") .. "(.*)$"))
      while rest:sub(1, 2) == "\r\n" do
        local at = assert(rest:find(delimiter, 3, true))
        local h, b = parse(rest:sub(3, at - 1))
        rest = rest:sub(at + #delimiter)
        out[#out + 1] = { type = h["content-type"], encoding = h["content-transfer-encoding"], body = mime.unqp(b) }
      end
      assert.equal("--\r\n", rest) -- the close delimiter ends the body
      return out
    end

    setup(function()
      port = server.free_port()
      record = os.tmpname()
      sink = daemon.start({ command = "run " .. proc.quote(host.root .. "/spec/support/smtp_sink.lua") .. " "
        .. port .. " " .. proc.quote(record), root = host.root })
      assert(sink:wait_log("msg=listening", 10), sink:log())
    end)
    teardown(function()
      sink:stop()
      os.remove(record)
    end)
    before_each(function() io.open(record, "w"):close() end)

    it("sends a multipart/alternative UTF-8 message with the envelope and credentials of SMTP_URL", function()
      local subject = "Connecter « Acme » à Heroku Connect — une étape de plus pour l'équipe d'administration"
      local text = "Bonjour Zoë,\n.a line that starts with a dot\nhttps://app.test/start?org=1&x=y\n"
      local html = '<p>Bonjour Zoë, <a href="https://app.test/start?org=1&amp;x=y">connectez</a></p>'
      local id, err = mailer():send({ to = "admin@acme.test", to_name = "Zoë Admin", subject = subject,
                                      text = text, html = html, reply_to = "help@isv.test" })
      assert.is_nil(err)
      local got = records()
      assert.equal(1, #got)
      local m = got[1]
      assert.equal(FROM, m.from)
      assert.same({ "admin@acme.test" }, m.rcpt)
      assert.equal("apikey", m.user)
      assert.equal("s@cret", m.password) -- percent-decoded from the URL
      assert.is_nil(m.data:find("[^\r]\n"), "a bare LF in the message")
      assert.is_nil(m.data:find("\r[^\n]"), "a bare CR in the message")
      for line in m.data:gmatch("([^\r\n]*)\r\n") do assert.is_true(#line <= 998) end
      local headers, body = parse(m.data)
      assert.equal(id, headers["message-id"])
      assert.matches("^<%x+@isv%.test>$", id)
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d %+0000$", headers["date"])
      assert.equal("ISV Onboarding <" .. FROM .. ">", headers["from"])
      assert.equal("<help@isv.test>", headers["reply-to"])
      assert.matches("^=%?UTF%-8%?B%?", headers["subject"]) -- not raw 8-bit
      assert.equal(subject, decode_words(headers["subject"]))
      assert.equal("Zoë Admin <admin@acme.test>", decode_words(headers["to"]))
      assert.equal("1.0", headers["mime-version"])
      assert.matches("^multipart/alternative;", headers["content-type"])
      local ps = parts(headers, body)
      assert.equal(2, #ps)
      assert.equal("text/plain; charset=UTF-8", ps[1].type)
      assert.equal("text/html; charset=UTF-8", ps[2].type)
      assert.equal("quoted-printable", ps[1].encoding)
      assert.equal(text:gsub("\n", "\r\n"), ps[1].body)
      assert.equal(html, ps[2].body)
    end)

    it("sends a single-part message when there is only text, with an ASCII subject as is", function()
      assert(mailer():send({ to = "admin@acme.test", subject = "Plain subject", text = "hello" }))
      local headers, body = parse(records()[1].data)
      assert.equal("Plain subject", headers["subject"])
      assert.equal("text/plain; charset=UTF-8", headers["content-type"])
      assert.equal("hello", mime.unqp(body):gsub("\r\n$", ""))
    end)

    it("reports a 4xx refusal as retryable and a 5xx one as final", function()
      local cases = {
        { "tempfail@acme.test", "smtp: refused: RCPT failed: 451", true },
        { "permfail@acme.test", "smtp: refused: RCPT failed: 550", false },
        { "tempdata@acme.test", "smtp: refused: reply 452", true },
        { "permdata@acme.test", "smtp: refused: reply 554", false },
      }
      for _, c in ipairs(cases) do
        local id, err, retryable = mailer():send({ to = c[1], subject = "x", text = "y" })
        assert.is_nil(id)
        assert.equal(c[2], err)
        assert.equal(c[3], retryable)
      end
      assert.same({}, records())
    end)

    it("reports refused credentials as final, without echoing the password", function()
      local id, err, retryable = mailer({ smtp_url = "smtp://bad:hunter2@127.0.0.1:" .. port })
        :send({ to = "admin@acme.test", subject = "x", text = "y" })
      assert.is_nil(id)
      assert.equal("smtp: login denied", err)
      assert.is_false(retryable)
    end)

    it("fails when STARTTLS is required and the server does not offer it", function()
      local id, err, retryable = mailer({ smtp_tls = "required" })
        :send({ to = "a@acme.test", subject = "x", text = "y" })
      assert.is_nil(id)
      assert.equal("smtp: tls: server offers no STARTTLS", err)
      assert.is_false(retryable)
      assert.same({}, records())
    end)

    it("times out on a server that stops answering, retryable", function()
      local id, err, retryable = mailer({ timeout = 0.5 }):send({ to = "stall@acme.test", subject = "x", text = "y" })
      assert.is_nil(id)
      assert.equal("smtp: timeout", err)
      assert.is_true(retryable)
    end)

    it("reports a refused connection as retryable", function()
      local id, err, retryable = mailer({ smtp_url = "smtp://127.0.0.1:" .. server.free_port() })
        :send({ to = "admin@acme.test", subject = "x", text = "y" })
      assert.is_nil(id)
      assert.equal("smtp: connection refused", err)
      assert.is_true(retryable)
    end)

    it("refuses an SMTP_URL of another scheme", function()
      local m, err = mail.new({ from = FROM, smtp_url = "http://127.0.0.1:1" })
      assert.is_nil(m)
      assert.matches("^SMTP_URL: expected smtp://", err)
    end)

    proc.leak_it("leaks nothing in mc.http_native.smtp under valgrind (sent, refused, misused)", function()
      proc.assert_script_no_leaks([[
        local native = require "mc.http_native"
        local port = ...
        local url = "smtp://127.0.0.1:" .. port
        assert(native.smtp{ url = url, from = "a@isv.test", to = { "x@acme.test" }, payload = "Subject: x\r\n\r\ny\r\n",
                            tls = "try", username = "u", password = "p" })
        assert(not native.smtp{ url = url, from = "a@isv.test", to = { "x@acme.test", "permfail@acme.test" },
                                payload = "Subject: x\r\n\r\ny\r\n", tls = "none" })
        assert(not pcall(native.smtp, { url = url, from = "a@isv.test", to = { "x@acme.test", 7 }, payload = "" }))
        assert(not pcall(native.smtp,
          { url = url, from = "a@isv.test", to = { "x@acme.test" }, payload = "", tls = "no" }))
        return 0
      ]], { tostring(port) })
      assert.equal(1, #records())
    end)

    it("takes SMTP_URL, SMTP_TLS and MAIL_TIMEOUT from the environment", function()
      local dir, cleanup = proc.tmpdir()
      local script = proc.write(dir .. "/send.lua", [[
        print(mc.mail.send{ to = "admin@acme.test", subject = "Env", text = "secret body" })
      ]])
      local r = proc.mc({ "run", script }, { env = {
        MAIL_FROM = FROM, SMTP_URL = "smtp://u:pw@127.0.0.1:" .. port, SMTP_TLS = "try", MAIL_TIMEOUT = "5" } })
      assert.equal(0, r.code, r.stderr)
      assert.matches("at=info msg=\"mail sent\" message_id=<%x+@isv.test> subject=Env "
        .. "to=admin@acme.test transport=smtp",
        r.stdout)
      assert.not_matches("secret body", r.stdout)
      assert.not_matches("pw", r.stdout)
      assert.equal("u", records()[1].user)
      cleanup()
    end)
  end)
end)
