local redact = require "mc.redact"

describe("mc.redact", function()
  it("knows secret-looking key names", function()
    for _, k in ipairs({ "password", "DB_PASSWORD", "access_token", "refresh_token", "secret",
                         "CALLBACK_SECRET", "api_key", "key", "ENCRYPTION_KEYS", "Authorization",
                         "cookie", "x_signature" }) do
      assert.is_true(redact.is_secret_key(k), k)
    end
    for _, k in ipairs({ "org_id", "msg", "status", "keyboard", "monkey", "duration_ms" }) do
      assert.is_false(redact.is_secret_key(k), k)
    end
  end)

  it("masks URL passwords and bearer tokens in text", function()
    assert.equal("connect postgres://u:[FILTERED]@h:5432/db failed",
      redact.text("connect postgres://u:hunter2@h:5432/db failed"))
    assert.equal("rediss://:[FILTERED]@h:6380", redact.text("rediss://:pw@h:6380"))
    assert.equal("Authorization: Bearer [FILTERED]", redact.text("Authorization: Bearer abc.DEF-123"))
    assert.equal("https://example.com/path", redact.text("https://example.com/path"))
    assert.equal("a://u:[FILTERED]@h and b://v:[FILTERED]@i, c://w@j, d://x:y/z@k",
      redact.text("a://u:p1@h and b://v:p:2@i, c://w@j, d://x:y/z@k"))
  end)

  it("masks in linear time: a long word before a URL (request text can reach the log)", function()
    local host = require "mc.host"
    local s = "/" .. string.rep("a", 50000) .. "://u:pw@h " .. string.rep("b://", 20000)
    local t = host.now()
    local out = redact.text(s)
    assert.truthy(host.now() - t < 1, "took " .. (host.now() - t) .. " s")
    assert.truthy(out:find("://u:[FILTERED]@h ", 1, true))
  end)
end)
