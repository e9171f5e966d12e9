local json = require "mc.json"

describe("mc.json", function()
  describe("decode", function()
    it("decodes objects, arrays, strings, booleans and null", function()
      local v = json.decode('{"a":[1,"two",true,null],"b":{"c":"\\u00e9\\ud83d\\ude00"}}')
      assert.same(1, v.a[1])
      assert.same("two", v.a[2])
      assert.is_true(v.a[3])
      assert.equal(json.null, v.a[4])
      assert.equal("é😀", v.b.c)
    end)

    it("gives integral numbers back as Lua integers, others as floats", function()
      local v = json.decode('[5, -3, 1.0, 2.5, 3e2, 9007199254740992, 1e300]')
      assert.equal("integer", math.type(v[1]))
      assert.equal(5, v[1])
      assert.equal("integer", math.type(v[2]))
      assert.equal("integer", math.type(v[3]))
      assert.equal("float", math.type(v[4]))
      assert.equal(2.5, v[4])
      assert.equal(300, v[5])
      assert.equal("integer", math.type(v[5]))
      assert.equal("integer", math.type(v[6]))
      assert.equal("float", math.type(v[7])) -- beyond 2^53: a double, not exact
    end)

    it("handles a scalar document", function()
      assert.equal("integer", math.type(json.decode("42")))
      assert.equal("x", json.decode('"x"'))
      assert.equal(json.null, json.decode("null"))
    end)

    it("returns nil, err for malformed JSON", function()
      for _, bad in ipairs({ "{", "[1,]", "{'a':1}", "", "tru", '{"a":1}x', "NaN", "Infinity", "0x10" }) do
        local v, err = json.decode(bad)
        assert.is_nil(v, bad)
        assert.is_string(err, bad)
      end
    end)

    it("refuses nesting deeper than 64 levels", function()
      local ok = json.decode(string.rep("[", 64) .. string.rep("]", 64))
      assert.is_table(ok)
      local v, err = json.decode(string.rep("[", 65) .. string.rep("]", 65))
      assert.is_nil(v)
      assert.matches("nested", err)
    end)

    it("refuses a number a double cannot hold instead of giving inf", function()
      for _, bad in ipairs({ "1e400", "-1e400", "[1, 1e309]", '{"a": {"b": -2e308}}' }) do
        assert.same({ nil, "number out of range" }, { json.decode(bad) }, bad)
      end
      assert.equal(1e308, json.decode("1e308"))
      assert.equal(0.0, json.decode("1e-400")) -- underflow is only a loss of precision
    end)

    it("refuses duplicate keys, at any depth, rather than keep the last", function()
      for _, bad in ipairs({ '{"a":1,"a":2}', '{"a":1,"b":{"c":null,"c":null}}', '[{"x":1},{"y":1,"y":1}]',
        '{"a\\u0062":1,"ab":2}', '{"a":[],"a":[]}' }) do
        assert.same({ nil, "duplicate key in an object" }, { json.decode(bad) }, bad)
      end
    end)

    it("counts members right past strings, escapes, whitespace and empty containers", function()
      local v = assert(json.decode(' { "a" : [ 1 , 2 , { } ] , "b" : [ ] , "c" : " ,{[\\"\\\\" ,'
        .. ' "d\\"," : [ null , null ] , "e" : { "f" : "}" } } '))
      assert.same({ 1, 2, {} }, v.a)
      assert.same(' ,{["\\', v.c)
      assert.same({ json.null, json.null }, v['d",'])
      assert.same({ { "x" }, { "x" } }, json.decode('[["x"],["x"]]'))
    end)

    it("refuses a NUL byte, which cjson took for the end of the text", function()
      assert.same({ nil, "NUL byte in JSON text" }, { json.decode('{"a":1}\0{"a":2}') })
      assert.same({ nil, "NUL byte in JSON text" }, { json.decode('"a\0b"') })
      assert.equal("a\0b", json.decode('"a\\u0000b"'))
    end)

    it("raises on misuse (a non-string argument)", function()
      assert.has_error(function() json.decode({}) end)
    end)
  end)

  describe("encode", function()
    it("round-trips values", function()
      local value = { name = "o'neil \"quoted\" \\ / \n\t", list = { 1, 2, 3 }, flag = false, n = 1.5 }
      assert.same(value, json.decode(json.encode(value)))
    end)

    it("encodes integers without a fraction", function()
      assert.equal("[1,-7,0]", json.encode({ 1, -7, 0 }))
    end)

    it("encodes mc.null as null", function()
      assert.equal('{"a":null}', json.encode({ a = json.null }))
      assert.equal(mc.null, json.null)
    end)

    it("has one null for JSON, SQL and Redis, under every name", function()
      assert.equal(mc.null, json.decode("null"))
      assert.equal(mc.null, require("mc.pg").null)
      assert.equal(mc.null, require("mc.redis").null)
      assert.equal(mc.null, require("mc.pg").parse_array("{NULL}")[1])
    end)

    it("encodes json.empty_array and json.array({}) as []", function()
      assert.equal('{"a":[]}', json.encode({ a = json.empty_array }))
      assert.equal("[]", json.encode(json.array({})))
      assert.equal("[[],[1]]", json.encode({ json.array({}), json.array({ 1 }) }))
      assert.equal("{}", json.encode({}))
    end)

    it("does not turn a string that merely looks like the sentinel into []", function()
      local s = "mc.json.empty_array:00000000000000000000000000000000"
      assert.equal('["' .. s .. '"]', json.encode({ s }))
    end)

    -- found by fuzz/targets/json.lua: libFuzzer saw the comparison and wrote the
    -- token into its input, which decoded and then encoded as []
    it("refuses the empty-array token itself in decoded text, anywhere, however escaped", function()
      local tok = json.empty_array
      local escaped = "\\u006d" .. tok:sub(2)
      for _, text in ipairs({ '"' .. tok .. '"', '["' .. tok .. '"]', '{"a":"' .. tok .. '"}',
        '{"' .. tok .. '":1}', '[{"b":["' .. escaped .. '"]}]', '"' .. escaped .. '"' }) do
        local v, err = json.decode(text)
        assert.is_nil(v, text)
        assert.equal("the empty-array token", err)
      end
      assert.same({ "mc.json.empty_array:0" }, json.decode('["mc.json.empty_array:0"]'))
    end)

    -- also found by the fuzzer: the quote of "\"" .. token encodes as \" and
    -- made the text "\"<token>" look like the token to the rewrite
    it("rewrites only a whole string that is the token, never one that ends with it", function()
      local tok = json.empty_array
      for _, s in ipairs({ '"' .. tok, '\\"' .. tok, 'x\\\\"' .. tok }) do
        local text = assert(json.encode({ s, { s } }))
        assert.same({ s, { s } }, json.decode(text), text)
      end
      assert.equal('["\\\\",[]]', json.encode({ "\\", tok }))
    end)

    it("returns nil, err for values JSON cannot hold", function()
      for _, bad in ipairs({ function() end, 0 / 0, math.huge, { [1] = 1, [1000] = 2 } }) do
        local s, err = json.encode(bad)
        assert.is_nil(s)
        assert.is_string(err)
      end
    end)

    it("refuses integers it could not write exactly, rather than round them", function()
      assert.equal("[99999999999999]", json.encode({ 99999999999999 }))
      local s, err = json.encode({ id = { 1234567890123456 } })
      assert.is_nil(s)
      assert.matches("1234567890123456", err, 1, true)
      assert.is_nil((json.encode(-100000000000000)))
    end)

    it("returns nil, err for a cycle, however many paths lead round it", function()
      -- in a child with a time limit: the failure this guards against is a hang
      local proc = require "support.process"
      local dir, cleanup = proc.tmpdir()
      local script = proc.write(dir .. "/cycle.lua", [[
        local json = require "mc.json"
        local t = {}
        t.a, t.b, t.c = t, t, { t, t }
        local s, err = json.encode(t)
        io.write(tostring(s), " ", tostring(err))
      ]])
      local res = proc.run({ "timeout", "10", proc.exe, "run", script })
      cleanup()
      assert.equal(0, res.code)
      assert.matches("^nil .*nesting", res.stdout)
    end)

    it("escapes control characters", function()
      assert.equal('"\\u0000\\u0001"', json.encode("\0\1"))
    end)
  end)
end)
