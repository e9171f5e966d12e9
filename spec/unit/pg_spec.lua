-- mc.pg without a server: the array parser, the decoders and quoting.
local pg = require "mc.pg"

local null = mc.null
local OID = pg.OID

describe("mc.pg", function()
  describe("parse_array", function()
    it("splits plain and quoted elements, with escapes and NULL", function()
      assert.same({ "a", 'b"c', "d,e", "f\\g", null, "NULL", "" },
        pg.parse_array([[{a,"b\"c","d,e","f\\g",NULL,"NULL",""}]]))
    end)

    it("nests multi-dimensional arrays and keeps empty ones", function()
      assert.same({ { "1", "2" }, { "3", "4" } }, pg.parse_array("{{1,2},{3,4}}"))
      assert.same({}, pg.parse_array("{}"))
    end)

    it("skips explicit bounds and applies the element decoder", function()
      assert.same({ 1, 2 }, pg.parse_array("[0:1]={1,2}", math.tointeger))
      assert.same({ 10, null }, pg.parse_array("{10,null}", tonumber))
    end)

    it("answers nil for what is not an array literal", function()
      for _, bad in ipairs({ "", "1,2", "{1,2", '{"a}', "{1,2}x", "{,}", "{{{{{{{{{1}}}}}}}}}" }) do
        assert.is_nil(pg.parse_array(bad), bad)
      end
    end)
  end)

  describe("decoders", function()
    local d = pg.decoders

    it("maps integers, floats and booleans", function()
      assert.equal(math.mininteger, d[OID.int8]("-9223372036854775808"))
      assert.is_true(math.type(d[OID.int4]("7")) == "integer")
      assert.equal(0.25, d[OID.float8]("0.25"))
      assert.equal(math.huge, d[OID.float8]("Infinity"))
      assert.is_true(d[OID.float4]("NaN") ~= d[OID.float4]("NaN"))
      assert.is_true(d[OID.bool]("t"))
      assert.is_false(d[OID.bool]("f"))
    end)

    it("maps numeric to a number only when no digit is lost", function()
      assert.equal(12, d[OID.numeric]("12"))
      assert.equal("integer", math.type(d[OID.numeric]("12")))
      assert.equal(-1.5, d[OID.numeric]("-1.50"))
      assert.equal(0.000123, d[OID.numeric]("0.000123"))
      assert.equal("99999999999999999999", d[OID.numeric]("99999999999999999999"))
      assert.equal("1234567890.1234567", d[OID.numeric]("1234567890.1234567"))
      assert.equal("NaN", d[OID.numeric]("NaN"))
      -- found by fuzz/targets/pg_values.lua: "." matched the decimal pattern and came back nil
      assert.equal(".", d[OID.numeric]("."))
      assert.equal("-.", d[OID.numeric]("-."))
    end)

    it("writes timestamps as ISO 8601", function()
      assert.equal("2024-02-29T23:59:59.5Z", d[OID.timestamptz]("2024-02-29 23:59:59.5+00"))
      assert.equal("2024-02-29T23:59:59+05:30", d[OID.timestamptz]("2024-02-29 23:59:59+05:30"))
      assert.equal("2024-02-29T23:59:59-03:00", d[OID.timestamptz]("2024-02-29 23:59:59-03"))
      assert.equal("2024-02-29T01:02:03", d[OID.timestamp]("2024-02-29 01:02:03"))
      assert.equal("infinity", d[OID.timestamptz]("infinity"))
      assert.equal("0044-03-15 12:00:00+00 BC", d[OID.timestamptz]("0044-03-15 12:00:00+00 BC"))
    end)

    it("decodes JSON, keeping text that is not JSON", function()
      assert.same({ a = { 1, 2 } }, d[OID.jsonb]('{"a":[1,2]}'))
      assert.equal(null, d[OID.json]("null"))
      assert.equal("{oops", d[OID.json]("{oops"))
    end)
  end)

  describe("quoting", function()
    it("quote_ident always quotes and doubles quotes", function()
      assert.equal('"users"', pg.quote_ident("users"))
      assert.equal('"Mixed ""Case"""', pg.quote_ident('Mixed "Case"'))
      assert.has_error(function() pg.quote_ident("") end)
      assert.has_error(function() pg.quote_ident("a\0b") end)
      assert.has_error(function() pg.quote_ident(nil) end)
    end)

    it("quote_literal doubles single quotes and leaves backslashes alone", function()
      assert.equal("'It''s'", pg.quote_literal("It's"))
      assert.equal([['C:\dir\']], pg.quote_literal([[C:\dir\]]))
      assert.equal("'42'", pg.quote_literal(42))
      assert.has_error(function() pg.quote_literal("a\0") end)
      assert.has_error(function() pg.quote_literal({}) end)
    end)
  end)

  it("connect raises without a URL and refuses other schemes", function()
    assert.has_error(function() pg.connect(42) end)
    local conn, err = pg.connect("mysql://u:secret@localhost/db")
    assert.is_nil(conn)
    assert.equal("not a postgres:// or postgresql:// URL", err)
  end)
end)
