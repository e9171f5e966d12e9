-- mc.http against a local server (spec/support/http_server.lua) run as its own
-- process by this binary; nothing here leaves the loopback interface.
local http = require "mc.http"
local json = require "mc.json"
local proc = require "support.process"
local server = require "support.server"

describe("mc.http", function()
  local base, stop, port

  setup(function()
    base, stop, port = server.http()
  end)

  teardown(function()
    if stop then stop() end
  end)

  local function echo(opts, path)
    local res, err = http.request(opts or {})
    assert.is_nil(err)
    assert.equal(200, res.status, res.body)
    return assert(res:json(), path)
  end

  describe("responses", function()
    it("gives the status as an integer, whatever it is", function()
      for _, code in ipairs { 201, 404, 503 } do
        local res = assert(http.get(base .. "/status/" .. code))
        assert.equal(code, res.status)
        assert.equal("integer", math.type(res.status))
        assert.equal("status " .. code, res.body)
      end
    end)

    it("lower-cases header names and joins repeated ones, set-cookie as an array", function()
      local res = assert(http.get(base .. "/headers", { query = {
        ["X-Single"] = "one",
        ["X-Twice"] = { "a", "b" },
        ["Set-Cookie"] = { "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=2" },
      } }))
      assert.equal("one", res.headers["x-single"])
      assert.equal("a, b", res.headers["x-twice"])
      assert.same({ "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=2" }, res.headers["set-cookie"])
      assert.equal("2", res.headers["content-length"])
      assert.is_nil(res.headers["X-Single"])
    end)

    it("decodes a JSON body with res:json(), and says why it cannot", function()
      local res = assert(http.get(base .. "/status/200"))
      local v, err = res:json()
      assert.is_nil(v)
      assert.is_string(err)
    end)

    it("answers HEAD without a body", function()
      local res = assert(http.head(base .. "/big/100"))
      assert.equal(200, res.status)
      assert.equal("", res.body)
      assert.equal("100", res.headers["content-length"])
    end)
  end)

  describe("requests", function()
    it("sends the method, path and headers", function()
      local e = echo { method = "DELETE", url = base .. "/echo", headers = { ["X-Token"] = "abc", ["X-N"] = 5 } }
      assert.equal("DELETE", e.method)
      assert.equal("/echo", e.path)
      assert.equal("abc", e.headers["x-token"])
      assert.equal("5", e.headers["x-n"])
      assert.matches("^multiconnect/", e.headers["user-agent"])
      assert.is_nil(e.headers.expect)
    end)

    it("round-trips a JSON body", function()
      local doc = { name = "Acme é", n = 42, list = { 1, 2, 3 }, nested = { ok = true } }
      local e = echo { method = "POST", url = base .. "/echo", json = doc }
      assert.equal("application/json", e.headers["content-type"])
      assert.same(doc, assert(json.decode(e.body)))
    end)

    it("encodes the query table: spaces, unicode, & and =", function()
      local q = { q = "a b&c=d", u = "é☃", list = { "1", "2" }, n = 7 }
      local e = echo { url = base .. "/echo", query = q }
      assert.same({ q = "a b&c=d", u = "é☃", list = { "1", "2" }, n = "7" }, e.args)
      assert.truthy(e.query:find("q=a%20b%26c%3Dd", 1, true), e.query)
      assert.truthy(e.query:find("u=%C3%A9%E2%98%83", 1, true), e.query)
    end)

    it("appends the query to one already in the URL", function()
      local e = echo { url = base .. "/echo?x=1", query = { y = "2" } }
      assert.equal("x=1&y=2", e.query)
    end)

    it("sends a form body urlencoded", function()
      local e = echo { method = "POST", url = base .. "/echo", form = { name = "a b", amp = "x&y", eq = "1=2" } }
      assert.equal("application/x-www-form-urlencoded", e.headers["content-type"])
      assert.equal("amp=x%26y&eq=1%3D2&name=a%20b", e.body)
    end)

    it("sends a raw body as given, and lets the caller set its type", function()
      local e = echo { method = "PUT", url = base .. "/echo", body = "raw\0bytes" }
      assert.equal("raw\0bytes", e.body)
      assert.is_nil(e.headers["content-type"])
      e = echo { method = "POST", url = base .. "/echo", body = "<x/>", headers = { ["content-type"] = "text/xml" } }
      assert.equal("text/xml", e.headers["content-type"])
    end)

    it("keeps the connection alive between requests", function()
      local first = echo { url = base .. "/echo" }
      local second = echo { url = base .. "/echo" }
      local third = assert(http.post(base .. "/echo", { json = { a = 1 } })):json()
      assert.equal(first.conn, second.conn)
      assert.equal(first.peer_port, second.peer_port)
      assert.equal(first.conn, third.conn)
    end)

    it("has http.get and http.post shortcuts", function()
      assert.equal("GET", assert(http.get(base .. "/echo")):json().method)
      local e = assert(http.post(base .. "/echo", { json = { a = 1 } })):json()
      assert.equal("POST", e.method)
      assert.equal('{"a":1}', e.body)
    end)
  end)

  describe("redirects", function()
    it("are not followed by default", function()
      local res = assert(http.get(base .. "/redirect"))
      assert.equal(302, res.status)
      assert.equal("/echo", res.headers.location)
    end)

    it("are followed up to `follow` hops", function()
      local res = assert(http.get(base .. "/redirect", { follow = 1 }))
      assert.equal(200, res.status)
      assert.equal("/echo", res:json().path)
      local none, err = http.get(base .. "/loop", { follow = 3 })
      assert.is_nil(none)
      assert.equal("too many redirects", err)
    end)
  end)

  describe("failures", function()
    it("times out", function()
      local res, err = http.get(base .. "/delay/3000", { timeout = 0.2 })
      assert.is_nil(res)
      assert.equal("timeout", err)
    end)

    it("reports a refused connection", function()
      local res, err = http.get("http://127.0.0.1:" .. server.free_port() .. "/")
      assert.is_nil(res)
      assert.equal("connection refused", err)
    end)

    it("refuses a body over max_body, with or without a Content-Length", function()
      local res, err = http.get(base .. "/big/5000", { max_body = 1000 })
      assert.is_nil(res)
      assert.equal("too large", err)
      res, err = http.get(base .. "/stream/50000", { max_body = 1000 })
      assert.is_nil(res)
      assert.equal("too large", err)
      res = assert(http.get(base .. "/big/1000", { max_body = 1000 }))
      assert.equal(1000, #res.body)
      res = assert(http.get(base .. "/stream/300000"))
      assert.equal(string.rep("x", 300000), res.body)
    end)

    it("fails TLS against a plain-HTTP port, verified or not", function()
      local res, err = http.get("https://127.0.0.1:" .. port .. "/echo")
      assert.is_nil(res)
      assert.matches("^tls: ", err)
      res, err = http.get("https://127.0.0.1:" .. port .. "/echo", { insecure = true })
      assert.is_nil(res)
      assert.matches("^tls: ", err)
    end)

    it("speaks only http and https", function()
      local res, err = http.get("ftp://127.0.0.1:" .. port .. "/")
      assert.is_nil(res)
      assert.equal("unsupported protocol", err)
    end)

    it("refuses a URL with a NUL byte instead of requesting the part before it", function()
      local res, err = http.get(base .. "/echo\0/../other")
      assert.is_nil(res)
      assert.equal("malformed url (NUL byte)", err)
      res, err = http.get(base .. "/echo", { query = { a = "x\0y" } }) -- escaped: %00
      assert.is_nil(err)
      assert.equal(200, res.status)
    end)

    it("still works after a failure", function()
      assert.is_nil((http.get(base .. "/delay/3000", { timeout = 0.1 })))
      assert.equal(200, assert(http.get(base .. "/echo")).status)
    end)
  end)

  describe("misuse", function()
    it("raises without a url", function()
      assert.has_error(function() http.request {} end, "http: url is required")
      assert.has_error(function() http.get(nil) end, "http: url is required")
      assert.has_error(function() http.request("http://x") end)
    end)

    it("raises on two bodies", function()
      assert.has_error(function()
        http.request { url = base .. "/echo", body = "x", json = {} }
      end, "http: give only one of body, json, form")
      assert.has_error(function()
        http.post(base .. "/echo", { json = {}, form = {} })
      end, "http: give only one of body, json, form")
    end)

    it("raises on header injection and bad options", function()
      assert.error_matches(function()
        http.get(base .. "/echo", { headers = { ["X-A"] = "1\r\nX-B: 2" } })
      end, "must not contain CR, LF")
      assert.error_matches(function()
        http.get(base .. "/echo", { headers = { ["Bad Name"] = "1" } })
      end, "invalid header name")
      assert.error_matches(function() http.get(base .. "/echo", { timeout = -1 }) end,
        "timeout must be a number of seconds")
      assert.error_matches(function() http.get(base .. "/echo", { follow = 1.5 }) end, "follow must be an integer")
      assert.error_matches(function() http.request { url = base, method = "get" } end, "invalid method")
      assert.error_matches(function() http.get(base .. "/echo", { query = { k = print } }) end, "query values")
      assert.error_matches(function() http.head(base .. "/echo", { body = "x" }) end, "HEAD request has no body")
      assert.error_matches(function() http.post(base .. "/echo", { json = { f = print } }) end, "json body")
    end)
  end)

  describe("memory", function()
    proc.leak_it("has no definite leaks under valgrind, including raised errors", function()
      proc.assert_script_no_leaks([[
        local http = require "mc.http"
        local base = ...
        assert(http.get(base .. "/echo", { query = { a = "b c" }, headers = { ["X-A"] = "1" } }))
        assert(http.post(base .. "/echo", { json = { a = 1 } })):json()
        assert(not http.get(base .. "/big/5000", { max_body = 100 }))
        assert(not http.get(base .. "/stream/5000", { max_body = 100 }))
        assert(not pcall(http.get, base, { headers = { ["X-A"] = "1", ["X-B"] = "\n" } }))
        assert(not pcall(http.get, base, { timeout = "x" }))
        return 0
      ]], { base })
    end)
  end)
end)
