-- onboarding.notify.send: the onboarding's mails through the tenant's email hook
-- (real hook files in a scratch TENANTS_DIR) to the project's sandbox SendGrid,
-- read back from its mailbox. Answers message id | "suppressed" | nil, err, retryable.
local notify = require "onboarding.notify"
local host = require "mc.host"
local env_vars = require "support.env_vars"
local sandbox_client = require "support.sandbox_client"
local proc = require "support.process"
local file = require "mc.file"

local ORG_ID = "00D5e000000AbCdEAK"
local URL = "https://mc.example/authenticate?org=" .. ORG_ID

local function org()
  return { org_name = "Acme", admin_email = "admin@acme.example",
    tenant = { org_id = ORG_ID, org_name = "Acme", admin_email = "admin@acme.example", environment = "production" } }
end

describe("onboarding.notify", function()
  local sb, dir, cleanup, restore

  setup(function() sb = sandbox_client.start(28) end)
  teardown(function() sb:stop() end)

  before_each(function()
    sb:reset()
    dir, cleanup = proc.tmpdir()
    proc.write(dir .. "/default.lua", assert(file.read(host.root .. "/scripts/tenants/default.lua")))
    restore = env_vars.set({ SENDGRID_API_URL = sb.url .. "/sendgrid", SENDGRID_API_KEY = "SG.spec",
      MAIL_FROM = "onboarding@isv.example", SMTP_URL = false, TENANTS_DIR = dir, SERVICE_NAME = false })
  end)
  after_each(function()
    restore()
    cleanup()
  end)

  local function mailbox() return sb:get("/sendgrid/__mailbox") end
  local function hook(src) proc.write(dir .. "/" .. ORG_ID .. ".lua", src) end

  it("renders the kind, sends it to the org's admin with the onboarding categories, "
    .. "and gives the message id", function()
    local id, err = notify.send(org(), "authenticate", { url = URL })
    assert.is_nil(err)
    assert.is_string(id)
    local box = mailbox()
    assert.equal(1, #box)
    local m = box[1]
    assert.equal(id, m.message_id)
    assert.same({ "onboarding", "authenticate" }, m.categories)
    assert.matches("Acme", m.subject)
    assert.matches(URL, m.text, 1, true)
  end)

  it("refuses an unknown kind or missing variables before any hook or mail, not retryable", function()
    assert.same({ nil, "mail reminder: unknown message kind reminder", false }, { notify.send(org(), "reminder", {}) })
    assert.same({ nil, "mail authenticate: authenticate needs url", false }, { notify.send(org(), "authenticate", {}) })
    assert.same({ nil, "mail authenticate: authenticate: url must be an http(s) URL", false },
      { notify.send(org(), "authenticate", { url = "javascript:alert(1)" }) })
    local o = org()
    o.org_name = nil
    assert.same({ nil, "mail active: active needs org_name", false },
      { notify.send(o, "active", { schema_name = "s" }) })
    assert.same({}, mailbox())
  end)

  it("sends nothing when the tenant's hook returns false", function()
    hook("return { email = function(t, kind, m) if kind == 'active' then return false end return m end }")
    assert.same({ "suppressed" }, { notify.send(org(), "active", { schema_name = "salesforce00d5e000000abcdeak" }) })
    assert.same({}, mailbox())
  end)

  it("sends the message as the hook changed it", function()
    hook([[return { email = function(t, kind, m)
      m.subject = "[" .. t.org_name .. "] " .. kind
      m.text = "custom text"
      m.html = nil
      return m
    end }]])
    assert.is_string(notify.send(org(), "failed", { step = "configure", reason = "Connect said no" }))
    local m = mailbox()[1]
    assert.equal("[Acme] failed", m.subject)
    assert.equal("custom text", m.text)
  end)

  it("refuses a hooked message without subject and text, not retryable", function()
    hook("return { email = function() return { html = '<p>only html</p>' } end }")
    assert.same({ nil, "tenant hook email returned a message without subject and text", false },
      { notify.send(org(), "authenticate", { url = URL }) })
    assert.same({}, mailbox())
  end)

  it("passes a failing hook's error on, not retryable", function()
    hook("return {\n  email = function() error('no mail today') end,\n}\n")
    assert.same({ nil, "tenant hook email (" .. dir .. "/" .. ORG_ID .. ".lua): " .. dir .. "/" .. ORG_ID
      .. ".lua:2: no mail today", false }, { notify.send(org(), "authenticate", { url = URL }) })
  end)

  it("passes SendGrid's refusals on: a bad key is permanent, a rate limit and a 5xx are retryable", function()
    sb:knobs({ sendgrid = { api_key = "SG.other" } })
    local ok, err, retry = notify.send(org(), "authenticate", { url = URL })
    assert.is_nil(ok)
    assert.matches("401", err)
    assert.is_false(retry)
    sb:knobs({ sendgrid = { api_key = mc.null, rate_limit = 0 } })
    ok, err, retry = notify.send(org(), "authenticate", { url = URL })
    assert.is_nil(ok)
    assert.matches("429", err)
    assert.is_true(retry)
    sb:knobs({ sendgrid = { rate_limit = mc.null, fail_next = 1, fail_status = 503 } })
    ok, err, retry = notify.send(org(), "authenticate", { url = URL })
    assert.is_nil(ok)
    assert.matches("503", err)
    assert.is_true(retry)
    assert.same({}, mailbox())
  end)
end)
