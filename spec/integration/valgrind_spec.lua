-- The plain binary under valgrind: a script that uses the host's modules must
-- leave no definitely lost memory. (The ASan suite checks leaks its own way.)
local proc = require "support.process"

describe("memory", function()
  local leak_it = proc.can_valgrind and it or pending
  leak_it("has no definite leaks under valgrind for a script using mc.json, mc.log, mc.env, mc.url, mc.crypto, mc.pg, mc.redis, mc.http", function()
    local dir, cleanup = proc.tmpdir()
    local script = proc.write(dir .. "/leak.lua", [[
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
    proc.assert_no_leaks({ "run", script })
    cleanup()
  end)
end)
