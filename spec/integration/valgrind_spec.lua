-- The plain binary under valgrind: a script that uses the host's modules must
-- leave no definitely lost memory. (The ASan suite checks leaks its own way.)
local proc = require "support.process"

describe("memory", function()
  proc.leak_it("has no definite leaks under valgrind for a script using mc.json, mc.log, mc.env, mc.url, "
    .. "mc.crypto, mc.pg, mc.redis, mc.http", function()
    proc.assert_script_no_leaks([[
      local v = assert(mc.json.decode('{"a":[1,2,{"b":null}],"c":"x"}'))
      assert(mc.json.encode({ v, mc.json.empty_array }))
      assert(not mc.json.decode("{"))
      mc.log.info("checking", { port = mc.env.int("PORT", 5000), password = "x" })
      assert(mc.url.parse("postgres://u:p@h:1/d"))
      assert(not mc.url.parse("::"))
      local ring = assert(mc.crypto.keyring("k:" .. mc.crypto.new_key()))
      assert(ring:open(ring:seal("secret", "ctx"), "ctx") == "secret")
      assert(not ring:open("v1.k.AAAA", "ctx"))
      assert(mc.crypto.from_base64url(mc.crypto.to_base64url(mc.crypto.random(64))))
      -- the four primitives together
      local db = assert(mc.pg.connect())
      assert(db:query("select $1::int as n, 'x'::text as s, '{1,2}'::int[] as a, '{}'::jsonb as j", 7)[1].n == 7)
      assert(not db:query("select * from no_such_table"))
      db:close()
      local r = assert(mc.redis.connect())
      assert(r:call("SET", "valgrind:key", "v") == "OK")
      assert(r:pipeline(function(p) p:call("GET", "valgrind:key") p:call("DEL", "valgrind:key") end))
      r:close()
      local res, err = mc.http.get("http://127.0.0.1:1/", { timeout = 2 })
      assert(not res and err)
      return 0
    ]])
  end)
  proc.leak_it("has no definite leaks under valgrind for isolates hitting each limit", function()
    proc.assert_script_no_leaks([[
      local isolate = mc.isolate
      local iso = assert(isolate.new{ memory = 1024 * 1024, instructions = 200000, timeout = 5 })
      assert(select(2, iso:exec("while true do pcall(function() while true do end end) end", "b.lua"))
        == "instruction budget exceeded")
      assert(select(2, iso:exec("local t = {} while true do t[#t + 1] = {} end", "m.lua")) == "memory limit exceeded")
      assert(select(2, iso:exec("local s = string.rep('x', 1e9)", "r.lua")) == "memory limit exceeded")
      assert(select(2, iso:set("big", string.rep("x", 2 * 1024 * 1024))) == "memory limit exceeded")
      assert(select(2, iso:exec("error('boom')", "e.lua")) == "e.lua:1: boom")
      assert(not pcall(iso.set, iso, "f", print))
      assert(iso:exec("return { f = function(v) return v, load end }", "f.lua", "t"))
      assert(select(2, iso:call("t", "f", { 1, { 2 } })) == "result 2: cannot copy a function value")
      assert(iso:exec("co = coroutine.create(function() while true do end end)", "c.lua"))
      assert(select(2, iso:exec("('a'):rep(150):find('.-.-.-.-b')", "p.lua"))
        == "p.lua:1: pattern too complex for a subject of 150 bytes")
      assert(iso:exec("assert(('a b'):gsub('%s+', '_') == 'a_b' and string.rep('', 1e12) == '')", "g.lua"))
      assert(iso:arm{ instructions = 1000 })
      assert(select(2, iso:exec("for i = 1, 2 do coroutine.wrap(function() end)() end", "a.lua"))
        == "instruction budget exceeded")
      assert(select(2, iso:exec("x = 1", "a.lua")) == "instruction budget exceeded")
      iso:close()
      local slow <close> = assert(isolate.new{ instructions = 1e15, timeout = 0.2 })
      assert(select(2, slow:exec("while true do end", "t.lua")) == "timeout")
      assert(slow:exec("left = { open = coroutine.create(function() coroutine.yield() end) } "
        .. "coroutine.resume(left.open)", "o.lua"))
      local dropped = isolate.new() -- closed by __gc at exit
      assert(dropped:exec("x = {}", "x.lua"))
      return 0
    ]])
  end)
end)
