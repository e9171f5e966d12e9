local isolate = require "mc.isolate"
local null = require("mc.json").null

-- A budget large enough that only the deadline can stop a loop in these specs.
local NO_BUDGET = 1e15

describe("mc.isolate", function()
  local iso
  before_each(function() iso = assert(isolate.new()) end)
  after_each(function() iso:close() end)

  describe("instruction budget", function()
    it("stops an endless loop", function()
      assert.same({ nil, "instruction budget exceeded" }, { iso:exec("while true do end", "loop.lua") })
    end)

    it("cannot be swallowed by pcall or xpcall inside the script", function()
      local src = [[
        while true do
          pcall(function() while true do end end)
          xpcall(function() while true do end end, function(e) while true do end end)
        end
      ]]
      assert.same({ nil, "instruction budget exceeded" }, { iso:exec(src, "pcall.lua") })
    end)

    it("reaches a coroutine created before the call", function()
      assert(iso:exec("co = coroutine.create(function() while true do end end)", "co.lua"))
      local src = "while true do coroutine.resume(co) end"
      assert.same({ nil, "instruction budget exceeded" }, { iso:exec(src, "resume.lua") })
      -- and one wrapped in pcall, resumed through coroutine.wrap
      assert(iso:exec("w = coroutine.wrap(function() while true do pcall(function() while true do end end) end end)",
        "w.lua"))
      assert.same({ nil, "instruction budget exceeded" }, { iso:exec("while true do pcall(w) end", "wrap.lua") })
    end)

    it("is fresh for each call", function()
      local small = assert(isolate.new{ instructions = 100000 })
      assert(small:exec("return { spin = function(n) for i = 1, n do end return n end }", "spin.lua", "t"))
      for _ = 1, 5 do
        assert.same({ true, 20000 }, { small:call("t", "spin", 20000) })
      end
      assert.same({ nil, "instruction budget exceeded" }, { small:call("t", "spin", 1000000) })
      assert.same({ true, 10 }, { small:call("t", "spin", 10) })
      small:close()
    end)
  end)

  describe("coroutines", function()
    it("are charged to the budget even when each ends before the hook fires", function()
      -- ~800 instructions each, below the hook's step: uncounted before the fix
      local small = assert(isolate.new{ instructions = 1e6, timeout = 60 })
      local src = "for i = 1, 2000 do coroutine.wrap(function() for j = 1, 400 do end end)() end"
      assert.same({ nil, "instruction budget exceeded" }, { small:exec(src, "co.lua") })
      src = "for i = 1, 2000 do coroutine.resume(coroutine.create(function() for j = 1, 400 do end end)) end"
      assert.same({ nil, "instruction budget exceeded" }, { small:exec(src, "co.lua") })
      -- a few coroutines still run
      assert.same({ true }, { small:exec("for i = 1, 10 do coroutine.wrap(function() end)() end", "co.lua") })
      small:close()
    end)
  end)

  describe("arm", function()
    it("sets one budget for a sequence of calls, spent calls fail at once", function()
      local small = assert(isolate.new{ instructions = 100000 })
      assert(small:exec("return { spin = function(n) for i = 1, n do end return n end }", "spin.lua", "t"))
      assert.same({ true }, { small:arm() })
      assert.same({ true, 40000 }, { small:call("t", "spin", 40000) })
      assert.same({ true, 40000 }, { small:call("t", "spin", 40000) })
      assert.same({ nil, "instruction budget exceeded" }, { small:call("t", "spin", 40000) })
      assert.same({ nil, "instruction budget exceeded" }, { small:call("t", "spin", 1) })
      assert.same({ nil, "instruction budget exceeded" }, { small:exec("x = 1", "x.lua") })
      assert.same({ nil, "instruction budget exceeded" }, { small:set("x", 1) })
      -- arming again starts a new budget; options override the isolate's
      assert.same({ true }, { small:arm{ instructions = 1000000 } })
      for _ = 1, 5 do assert.same({ true, 30000 }, { small:call("t", "spin", 30000) }) end
      small:close()
    end)

    it("sets one deadline: after it passed, even a trivial call times out", function()
      local slow = assert(isolate.new{ instructions = NO_BUDGET })
      assert(slow:arm{ timeout = 0.1 })
      assert.same({ nil, "timeout" }, { slow:exec("while true do end", "t.lua") })
      assert.same({ nil, "timeout" }, { slow:exec("x = 1", "t.lua") })
      slow:close()
    end)

    it("validates its options and answers closed", function()
      assert.has_error(function() iso:arm{ instructions = 0 } end, "isolate.arm: instructions must be an integer >= 1")
      assert.has_error(function() iso:arm{ timeout = -1 } end,
        "isolate.arm: timeout must be a number of seconds in (0, 86400]")
      assert.has_error(function() iso:arm{ memory = 1e6 } end, "isolate.arm: unknown option memory")
      local c = assert(isolate.new())
      c:close()
      assert.same({ nil, "closed" }, { c:arm() })
    end)
  end)

  describe("work inside one C call", function()
    local quick
    -- a short deadline: a guard that let these through would show as "timeout"
    before_each(function() quick = assert(isolate.new{ instructions = NO_BUDGET, timeout = 0.5 }) end)
    after_each(function() quick:close() end)

    local function refused(src, err)
      assert.same({ nil, "bomb.lua:1: " .. err }, { quick:exec(src, "bomb.lua") })
    end

    it("refuses a backtracking pattern bomb, as a function or a method", function()
      local too_complex = "pattern too complex for a subject of 150 bytes"
      refused([[string.find(string.rep("a", 150), ".-.-.-.-b")]], too_complex)
      refused([[local s = ("a"):rep(150) s:match(".-.-.-.-b")]], too_complex)
      refused([[local s = ("a"):rep(150) for m in s:gmatch(".-.-.-.-b") do end]], too_complex)
      refused([[local s = ("a"):rep(150) s:gsub(".-.-.-.-b", "x")]], too_complex)
      refused([[("x"):rep(150):find(".-.-.-.-b")]], too_complex)
      -- exponential optionals, balanced matches and back-references count too
      refused([[local s = ("a"):rep(25) s:find(("a?"):rep(25) .. s .. "b")]],
        "pattern too complex for a subject of 25 bytes")
      refused([[(("("):rep(3000)):find("%b()")]], "pattern too complex for a subject of 3000 bytes")
      refused([[(("a"):rep(3000)):find("(a*)%1b")]], "pattern too complex for a subject of 3000 bytes")
      -- and a long plain needle in a long subject
      refused([[(("a"):rep(4e6)):find(("a"):rep(999) .. "b", 1, true)]],
        "pattern too complex for a subject of 4000000 bytes")
      -- pcall sees an ordinary error
      assert.same({ true }, { quick:exec([[assert(not pcall(string.find, ("a"):rep(150), ".-.-.-.-b"))]], "p.lua") })
    end)

    it("lets moderate patterns on normal strings through", function()
      local src = [[
        local text = ("word, another  word; "):rep(500) -- 10.5 KB
        local _, spaces = text:gsub("%s+", " ")
        assert(spaces == 1500)
        local n = 0
        for w in text:gmatch("%a+") do n = n + 1 end
        assert(n == 1500)
        assert(("  Acme Corp  "):match("^%s*(.-)%s*$") == "Acme Corp")
        assert(("admin@example.com"):match("^([%w._-]+)@([%w.-]+)$") == "admin")
        assert(text:find("another", 1, true) == 7)
        assert(text:find("; ") == 20)
        assert(("x"):rep(1000):find("x*y") == nil)
        assert(("k=v; a=b"):gsub("(%w+)=(%w+)", "%2=%1") == "v=k; b=a")
        assert(("%bx"):find("%%b") == 1)
      ]]
      assert.same({ true }, { quick:exec(src, "ok.lua") })
    end)

    it("refuses string.rep of nothing and table shifts over millions of nils", function()
      assert.same({ true },
        { quick:exec([[assert(string.rep("", 1e12) == "" and ("") :rep(1e12, "") == "")]], "rep.lua") })
      refused("table.move({}, 1, 1e12, 1)", "table.move: more than 2000000 elements to shift")
      refused("table.insert(setmetatable({}, { __len = function() return 1e15 end }), 1, 'x')",
        "table.insert: more than 2000000 elements to shift")
      refused("table.remove(setmetatable({}, { __len = function() return 1e15 end }), 1)",
        "table.remove: more than 2000000 elements to shift")
      assert.same({ true }, { quick:exec([[
        local t = table.move({ 1, 2, 3 }, 1, 3, 2)
        table.insert(t, 1, 0) table.insert(t, 9) assert(table.remove(t, 1) == 0 and table.remove(t) == 9)
        assert(table.concat(t, ",") == "1,1,2,3")
      ]], "t.lua") })
    end)
  end)

  describe("deadline", function()
    it("stops a loop with a large budget, pcall or not", function()
      local slow = assert(isolate.new{ instructions = NO_BUDGET, timeout = 0.2 })
      assert.same({ nil, "timeout" }, { slow:exec("while true do end", "t.lua") })
      assert.same({ nil, "timeout" },
        { slow:exec("while true do pcall(function() while true do end end) end", "t.lua") })
      -- usable, with a fresh deadline, afterwards
      assert.same({ true }, { slow:exec("x = 1", "t.lua") })
      slow:close()
    end)
  end)

  describe("memory cap", function()
    it("stops a table-filling loop", function()
      local src = "local t = {} for i = 1, 1e9 do t[i] = i end"
      assert.same({ nil, "memory limit exceeded" }, { iso:exec(src, "fill.lua") })
      assert.is_true(iso:memory() <= 8 * 1024 * 1024)
    end)

    it("stops a string.rep bomb and string concatenation", function()
      assert.same({ nil, "memory limit exceeded" }, { iso:exec("local s = string.rep('x', 1e9)", "rep.lua") })
      local src = "local s = 'x' while true do s = s .. s end"
      assert.same({ nil, "memory limit exceeded" }, { iso:exec(src, "cat.lua") })
    end)

    it("refuses a value too large to copy in, and stays usable", function()
      local small = assert(isolate.new{ memory = 512 * 1024 })
      assert.same({ nil, "memory limit exceeded" }, { small:set("big", string.rep("x", 1024 * 1024)) })
      assert.same({ true }, { small:exec("x = 1", "ok.lua") })
      small:close()
    end)

    it("counts what is allocated", function()
      local before = iso:memory()
      assert(iso:exec("keep = string.rep('x', 100000)", "keep.lua"))
      assert.is_true(iso:memory() >= before + 100000)
    end)
  end)

  describe("surface", function()
    it("has no os, io, debug, package, require, dofile, loadfile, collectgarbage, print, string.dump", function()
      local src = [[
        for _, name in ipairs({ "os", "io", "debug", "package", "require", "dofile", "loadfile",
                                "collectgarbage", "print" }) do
          if _G[name] ~= nil then error(name .. " is reachable") end
        end
        if string.dump ~= nil then error("string.dump is reachable") end
      ]]
      assert.same({ true }, { iso:exec(src, "surface.lua") })
      -- and the ones a hook needs are there
      assert.same({ true }, { iso:exec("assert(string.format and table.concat and math.floor and utf8.char "
        .. "and coroutine.wrap and pcall)", "s.lua") })
    end)

    it("refuses binary chunks in exec and in load", function()
      local chunk = string.dump(function() return 42 end)
      local ok, err = iso:exec(chunk, "bin.lua")
      assert.is_nil(ok)
      assert.matches("binary chunk", err)
      assert(iso:set("chunk", chunk))
      local src = [[
        local f, e = load(chunk, "x", "b")
        assert(f == nil and e:find("binary chunk"), "loaded bytecode")
      ]]
      assert.same({ true }, { iso:exec(src, "load.lua") })
    end)

    it("loads text with the isolate's globals or a given env", function()
      local src = [[
        assert(load("return x")() == 7)
        local env = {}
        load("y = 1", "c", "t", env)()
        assert(env.y == 1 and y == nil)
      ]]
      assert(iso:exec("x = 7", "x.lua"))
      assert.same({ true }, { iso:exec(src, "env.lua") })
    end)

    it("locks the string metatable", function()
      local ok, err = iso:exec("getmetatable('').__index = { upper = function() return 'pwned' end }", "mt.lua")
      assert.is_nil(ok)
      assert.matches("^mt.lua:1: attempt to index a boolean value", err)
      assert.same({ true }, { iso:exec("assert(('a'):upper() == 'A')", "mt.lua") })
    end)

    it("keeps isolates apart", function()
      local other = assert(isolate.new())
      assert(iso:exec("secret = 'a'; string.secret = 'b'", "a.lua"))
      assert.same({ true }, { other:exec("assert(secret == nil and string.secret == nil)", "b.lua") })
      other:close()
    end)
  end)

  describe("copying values", function()
    before_each(function()
      assert(iso:exec("return { echo = function(...) return ... end, "
        .. "count = function(...) return select('#', ...) end }", "echo.lua", "t"))
    end)

    it("round-trips nested tables, integers and floats, mc.null, strings with NULs", function()
      local value = { a = { b = { 1, 2.5, "x\0y", null, true, false } }, [3] = 3.0, [1.5] = "k" }
      local ok, back, n, f = iso:call("t", "echo", value, 7, 7.0)
      assert.is_true(ok)
      assert.same(value, back)
      assert.equal("integer", math.type(back.a.b[1]))
      assert.equal("float", math.type(back[3]))
      assert.equal("x\0y", back.a.b[3])
      assert.equal(null, back.a.b[4])
      assert.equal("integer", math.type(n))
      assert.equal("float", math.type(f))
    end)

    it("keeps nils between arguments and results", function()
      assert.same({ true, 4 }, { iso:call("t", "count", nil, 1, nil, nil) })
      assert.same({ true, nil, 2 }, { iso:call("t", "echo", nil, 2) })
    end)

    it("refuses functions, userdata and threads going in (misuse raises)", function()
      assert.has_error(function() iso:call("t", "echo", print) end, "isolate: argument 1: cannot copy a function value")
      assert.has_error(function() iso:call("t", "echo", 1, { f = print }) end,
        "isolate: argument 2: cannot copy a function value")
      assert.has_error(function() iso:set("x", io.stdout) end, "isolate: cannot copy a userdata value")
      assert.has_error(function() iso:set("x", coroutine.create(print)) end, "isolate: cannot copy a thread value")
    end)

    it("refuses functions and coroutines coming out", function()
      assert(iso:exec("return { f = function() return 1, { print = load } end, "
        .. "co = function() return coroutine.create(load) end }", "out.lua", "bad"))
      assert.same({ nil, "result 2: cannot copy a function value" }, { iso:call("bad", "f") })
      assert.same({ nil, "result 1: cannot copy a thread value" }, { iso:call("bad", "co") })
    end)

    it("refuses cycles and shared tables, and nesting deeper than 32", function()
      local cyclic = {}
      cyclic.self = cyclic
      assert.has_error(function() iso:set("x", cyclic) end, "isolate: cyclic or shared table")
      local shared = {}
      assert.has_error(function() iso:set("x", { shared, shared }) end, "isolate: cyclic or shared table")
      assert(iso:exec("return { bomb = function() local t = {} for i = 1, 20 do t = { t, t } end return t end }",
        "b.lua", "b"))
      assert.same({ nil, "result 1: cyclic or shared table" }, { iso:call("b", "bomb") })

      local function nest(n) local t = {} for _ = 2, n do t = { t } end return t end
      assert.same({ true }, { iso:set("ok", nest(32)) })
      assert.has_error(function() iso:set("x", nest(33)) end, "isolate: table nested deeper than 32 levels")
      assert.same({ true }, { iso:exec("return { deep = function() "
        .. "local t = {} for i = 1, 40 do t = { t } end return t end }", "d.lua", "d") })
      assert.same({ nil, "result 1: table nested deeper than 32 levels" }, { iso:call("d", "deep") })
    end)

    it("does not copy metatables", function()
      local v = setmetatable({ 1 }, { __index = function() return "host" end })
      assert(iso:exec("return { probe = function(x) return getmetatable(x) == nil, x[2] end }", "p.lua", "p"))
      assert.same({ true, true, nil }, { iso:call("p", "probe", v) })
    end)
  end)

  describe("errors", function()
    it("carry chunkname:line, for runtime and syntax errors", function()
      assert.same({ nil, "hook.lua:3: boom" }, { iso:exec("\n\nerror('boom')", "hook.lua") })
      assert.same({ nil, "hook.lua:2: attempt to perform arithmetic on a nil value (global 'x')" },
        { iso:exec("\nreturn x + 1", "hook.lua") })
      local ok, err = iso:exec("return (", "syntax.lua")
      assert.is_nil(ok)
      assert.matches("^syntax.lua:1: ", err)
    end)

    it("describe a non-string error object", function()
      assert.same({ nil, "(error object is a table value)" }, { iso:exec("error({ code = 1 })", "e.lua") })
      assert.same({ nil, "42" }, { iso:exec("error(42)", "e.lua") })
    end)

    it("name a missing table or function", function()
      assert.same({ nil, "isolate: no table 'nope'" }, { iso:call("nope", "f") })
      assert(iso:exec("t = {}", "t.lua"))
      assert.same({ nil, "isolate: no function 't.f'" }, { iso:call("t", "f") })
    end)

    it("leave the isolate usable", function()
      assert.is_nil(iso:exec("while true do end", "loop.lua"))
      assert.is_nil(iso:exec("local t = {} while true do t[#t + 1] = {} end", "fill.lua"))
      assert.is_nil(iso:exec("error('x')", "err.lua"))
      assert.same({ true }, { iso:exec("return { f = function(a) return a * 2 end }", "ok.lua", "ok") })
      assert.same({ true, 42 }, { iso:call("ok", "f", 21) })
    end)
  end)

  describe("lifecycle", function()
    it("answers nil, 'closed' once closed, and closes twice without harm", function()
      local c = assert(isolate.new())
      c:close()
      c:close()
      assert.same({ nil, "closed" }, { c:exec("x = 1", "x.lua") })
      assert.same({ nil, "closed" }, { c:call("t", "f") })
      assert.same({ nil, "closed" }, { c:set("x", 1) })
      assert.same({ nil, "closed" }, { c:memory() })
      assert.equal("mc.isolate (closed)", tostring(c))
    end)

    it("closes with <close>", function()
      local seen
      do
        local c <close> = assert(isolate.new())
        seen = c
      end
      assert.same({ nil, "closed" }, { seen:memory() })
    end)

    it("refuses __gc metamethods, which Lua runs with hooks off", function()
      local ok, err = iso:exec("setmetatable({}, { __gc = function() while true do end end })", "gc.lua")
      assert.is_nil(ok)
      assert.matches("__gc metamethods are not allowed", err, 1, true)
      -- other metatables still work
      assert.same({ true }, { iso:exec("assert(setmetatable({}, { __index = { a = 1 } }).a == 1)", "mt.lua") })
    end)
  end)

  describe("options", function()
    it("validates them", function()
      assert.has_error(function() isolate.new{ memory = 1024 } end, "isolate.new: memory must be an integer >= 262144")
      assert.has_error(function() isolate.new{ memory = "8M" } end, "isolate.new: memory must be an integer >= 262144")
      local instructions = "isolate.new: instructions must be an integer >= 1"
      assert.has_error(function() isolate.new{ instructions = 0 } end, instructions)
      assert.has_error(function() isolate.new{ instructions = 1.5 } end, instructions)
      assert.has_error(function() isolate.new{ timeout = 0 } end,
        "isolate.new: timeout must be a number of seconds in (0, 86400]")
      assert.has_error(function() isolate.new{ memroy = 1 } end, "isolate.new: unknown option memroy")
      assert.has_error(function() isolate.new("x") end)
      assert.truthy(isolate.new{ memory = 1024 * 1024, instructions = 5e7, timeout = 0.5 })
    end)

    it("raises on misuse of the methods", function()
      assert.has_error(function() iso:exec(nil, "x.lua") end)
      assert.has_error(function() iso:exec("x = 1") end)
      assert.has_error(function() iso:call("t") end)
      assert.has_error(function() iso:set("x") end)
    end)
  end)
end)
