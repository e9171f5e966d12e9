-- The command line, driven as a user would: the real binary, spawned.
local proc = require "support.process"

describe("multiconnect", function()
  local dir, cleanup
  setup(function() dir, cleanup = proc.tmpdir() end)
  teardown(function() cleanup() end)

  it("version names every library it runs with", function()
    local r = proc.mc({ "version" })
    assert.equal(0, r.code)
    for _, lib in ipairs({ "multiconnect", "Lua 5.4", "libmicrohttpd", "libpq", "hiredis",
                           "libcurl", "OpenSSL", "lua-cjson" }) do
      assert.matches(lib, r.stdout, 1, true)
    end
  end)

  it("help lists the commands; an unknown command exits 2 with usage", function()
    local r = proc.mc({ "help" })
    assert.equal(0, r.code)
    assert.matches("run FILE|MODULE", r.stdout, 1, true)
    r = proc.mc({ "frobnicate" })
    assert.equal(2, r.code)
    assert.matches('unknown command "frobnicate"', r.stderr, 1, true)
  end)

  it("keys new prints a fresh ENCRYPTION_KEYS entry that mc.crypto takes", function()
    local a, b = proc.mc({ "keys", "new" }), proc.mc({ "keys", "new", "k2" })
    assert.equal(0, a.code, a.stderr)
    assert.matches("^k%d%d%d%d%d%d%d%d:[%w+/]+=\n$", a.stdout)
    assert.matches("^k2:[%w+/]+=\n$", b.stdout)
    assert.not_equal(a.stdout:match(":(.*)"), b.stdout:match(":(.*)"))
    local ring = assert(require("mc.crypto").keyring(a.stdout:gsub("\n$", "") .. "," .. b.stdout:gsub("\n$", "")))
    assert.equal("secret", ring:open(ring:seal("secret", "ctx"), "ctx"))
    local bad = proc.mc({ "keys", "new", "no way" })
    assert.equal(2, bad.code)
    assert.matches('KID must be 1 to 32 of A-Z a-z 0-9 _ -, got "no way"', bad.stderr, 1, true)
    assert.equal("", bad.stdout)
    assert.equal(2, proc.mc({ "keys", "old" }).code)
  end)

  describe("run", function()
    it("runs a script from another directory with mc.json, mc.log and mc.env", function()
      proc.write(dir .. "/script.lua", [[
        local json, log, env = mc.json, require("mc.log"), require("mc.env")
        local port = env.int("PORT", 5000)
        log.info("started", { port = port, args = json.encode(arg) })
        print(json.encode({ port = port, first = ..., n = select("#", ...) }))
      ]])
      local r = proc.mc({ "run", "script.lua", "a", "b" }, { cwd = dir, env = { PORT = "7001" } })
      assert.equal(0, r.code, r.stderr)
      local lines = {}
      for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
      assert.matches("^at=info msg=started ", lines[1])
      assert.matches("port=7001", lines[1], 1, true)
      assert.same({ port = 7001, first = "a", n = 2 }, mc.json.decode(lines[2]))
    end)

    it("sets arg as lua.c does", function()
      proc.write(dir .. "/args.lua", "print(arg[0], arg[1], arg[2], #arg)")
      local r = proc.mc({ "run", "args.lua", "x", "y z" }, { cwd = dir })
      assert.equal("args.lua\tx\ty z\t2\n", r.stdout)
    end)

    it("finds a module under $MC_ROOT/scripts", function()
      os.execute("mkdir -p " .. proc.quote(dir .. "/scripts/tools"))
      proc.write(dir .. "/scripts/tools/hello.lua", "print('hello ' .. (... or '?'))")
      local r = proc.mc({ "run", "tools.hello", "world" }, { cwd = "/", env = { MC_ROOT = dir } })
      assert.equal(0, r.code, r.stderr)
      assert.equal("hello world\n", r.stdout)
    end)

    it("prints a traceback and exits 1 when the script raises", function()
      proc.write(dir .. "/boom.lua", "local function f() error('kaboom') end\nf()\n")
      local r = proc.mc({ "run", "boom.lua" }, { cwd = dir })
      assert.equal(1, r.code)
      assert.matches("boom.lua:1: kaboom", r.stderr, 1, true)
      assert.matches("stack traceback:", r.stderr, 1, true)
      assert.matches("boom.lua:2:", r.stderr, 1, true)
    end)

    it("exits 1 with the message when the script returns nil, err", function()
      proc.write(dir .. "/soft.lua", "return nil, 'tenant not found'")
      local r = proc.mc({ "run", "soft.lua" }, { cwd = dir })
      assert.equal(1, r.code)
      assert.equal("multiconnect run: tenant not found\n", r.stderr)
    end)

    it("exits with the integer the script returns", function()
      proc.write(dir .. "/three.lua", "return 3")
      assert.equal(3, proc.mc({ "run", "three.lua" }, { cwd = dir }).code)
    end)

    it("says what it looked for when the target does not exist", function()
      local r = proc.mc({ "run", "no.such.module" }, { cwd = dir, env = { MC_ROOT = dir } })
      assert.equal(1, r.code)
      assert.matches('no file or module named "no.such.module"', r.stderr, 1, true)
      assert.matches("scripts/no/such/module.lua", r.stderr, 1, true)
    end)

    it("reports a syntax error with file and line", function()
      proc.write(dir .. "/bad.lua", "local x = \n\n)")
      local r = proc.mc({ "run", "bad.lua" }, { cwd = dir })
      assert.equal(1, r.code)
      assert.matches("bad.lua:3:", r.stderr, 1, true)
    end)

    it("gives a clear error naming a malformed variable", function()
      proc.write(dir .. "/port.lua", "print(mc.env.int('PORT', 5000))")
      local r = proc.mc({ "run", "port.lua" }, { cwd = dir, env = { PORT = "50OO" } })
      assert.equal(1, r.code)
      assert.matches('PORT: expected an integer, got "50OO"', r.stderr, 1, true)
      r = proc.mc({ "run", "port.lua" }, { cwd = dir, env = { PORT = false } })
      assert.equal("5000\n", r.stdout)
    end)

    it("refuses an unknown MC_ROOT", function()
      local r = proc.mc({ "version" }, { env = { MC_ROOT = dir .. "/missing" } })
      assert.equal(1, r.code)
      assert.matches("MC_ROOT=", r.stderr, 1, true)
    end)
  end)

  describe("logging", function()
    local script
    setup(function()
      script = proc.write(dir .. "/levels.lua", [[
        local log = mc.log
        log.debug("d") log.info("i") log.warn("w") log.error("e")
      ]])
    end)

    it("logs info and above by default", function()
      local r = proc.mc({ "run", script }, { env = { LOG_LEVEL = false } })
      assert.equal("at=info msg=i\nat=warn msg=w\nat=error msg=e\n", r.stdout)
    end)

    it("honours LOG_LEVEL", function()
      assert.equal("at=warn msg=w\nat=error msg=e\n",
        proc.mc({ "run", script }, { env = { LOG_LEVEL = "warn" } }).stdout)
      assert.equal(4, select(2, proc.mc({ "run", script }, { env = { LOG_LEVEL = "DEBUG" } }).stdout:gsub("\n", "")))
    end)

    it("rejects an unknown LOG_LEVEL clearly", function()
      local r = proc.mc({ "run", script }, { env = { LOG_LEVEL = "loud" } })
      assert.equal(1, r.code)
      assert.matches('LOG_LEVEL: expected one of debug, info, warn, error, got "loud"', r.stderr, 1, true)
    end)
  end)
end)
