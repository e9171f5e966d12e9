local url = require "mc.url"

describe("mc.url.parse", function()
  it("splits a Postgres URL", function()
    local u = assert(url.parse("postgres://user:p%40ss@db.example.com:5433/name?sslmode=require"))
    assert.equal("postgres", u.scheme)
    assert.equal("user", u.user)
    assert.equal("p@ss", u.password)
    assert.equal("db.example.com", u.host)
    assert.equal(5433, u.port)
    assert.equal("integer", math.type(u.port))
    assert.equal("/name", u.path)
    assert.equal("sslmode=require", u.query)
  end)

  it("splits a rediss URL with only a password", function()
    local u = assert(url.parse("rediss://:secret@127.0.0.1:6380/2"))
    assert.equal("rediss", u.scheme)
    assert.equal("", u.user)
    assert.equal("secret", u.password)
    assert.equal("/2", u.path)
  end)

  it("leaves absent parts nil", function()
    local u = assert(url.parse("https://api.heroku.com"))
    assert.is_nil(u.port)
    assert.is_nil(u.user)
    assert.is_nil(u.query)
  end)

  it("returns nil, err for what is not a URL", function()
    for _, bad in ipairs({ "", "not a url", "http://", "://x", "http://a b" }) do
      local u, err = url.parse(bad)
      assert.is_nil(u, bad)
      assert.is_string(err, bad)
    end
  end)

  it("returns nil, err for a user or password that does not decode, never drops it", function()
    for _, bad in ipairs({ "redis://u:p%0Aw@h:1/2", "redis://u:p%00w@h/", "redis://u%0D:pw@h/" }) do
      local u, err = url.parse(bad)
      assert.is_nil(u, bad)
      assert.is_string(err, bad)
    end
  end)

  it("refuses very long input", function()
    local u, err = url.parse("http://x/" .. string.rep("a", 9000))
    assert.is_nil(u)
    assert.equal("URL too long", err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() url.parse() end)
  end)
end)

describe("mc.url.unescape", function()
  it("decodes every %XX, and leaves + and stray % alone", function()
    assert.equal("p@ss:w/rd", url.unescape("p%40ss%3aw%2Frd"))
    assert.equal("a+b%zz%", url.unescape("a+b%zz%"))
    assert.equal("a\0b", url.unescape("a%00b"))
    assert.equal("", url.unescape(""))
  end)

  it("raises on misuse", function()
    assert.has_error(function() url.unescape(nil) end)
  end)
end)

describe("mc.url.decode_query", function()
  it("decodes a query string or urlencoded form, repeated names as arrays", function()
    assert.same({ a = { "1", "2", "3" }, b = "x y!" }, url.decode_query("a=1&b=x+y%21&a=2&a=3"))
  end)

  it("splits a name at its first =, and keeps what has no value", function()
    assert.same({ k = "v=w", a = "", b = "", [""] = "v" }, url.decode_query("k=v=w&a&b=&=v"))
  end)

  it("skips empty pairs and leaves a stray % as it is", function()
    assert.same({ a = "1", ["a b"] = "c%2" }, url.decode_query("&&a=1&&a%20b=c%2&"))
    assert.same({}, url.decode_query(""))
  end)
end)
