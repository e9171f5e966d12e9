-- What every state the host builds must offer.
local host = require "mc.host"
local proc = require "support.process"

describe("the host", function()
  it("exposes every mc module through the global mc", function()
    assert.equal(require("mc.json"), mc.json)
    assert.equal(require("mc.log"), mc.log)
    assert.equal(require("mc.env"), mc.env)
    assert.is_nil(mc.no_such_module)
  end)

  it("keeps Debian's Lua 5.4 locations after the project's own", function()
    local scripts = package.path:find(host.root .. "/scripts/?.lua", 1, true)
    local debian = package.path:find("/usr/share/lua/5.4/?.lua", 1, true)
    assert.truthy(scripts)
    assert.truthy(debian)
    assert.is_true(scripts < debian)
    assert.truthy(package.cpath:find("/usr/lib/x86_64-linux-gnu/lua/5.4/?.so", 1, true)
      or package.cpath:find("/lua/5.4/?.so", 1, true))
  end)

  it("loads Debian's Lua C modules into the binary", function()
    local term = require "term"     -- a C module from lua-term, busted's dependency
    assert.is_function(term.isatty)
    local system = require "system" -- lua-system, another C module
    assert.is_function(system.gettime)
  end)

  it("knows where it runs from", function()
    assert.matches("/bin/multiconnect", host.exe, 1, true)
    local f = io.open(host.root .. "/core/host.c")
    assert.truthy(f, "MC_ROOT defaults to the folder above bin/")
    f:close()
  end)

  it("carries its Lua half inside the binary", function()
    local dir, cleanup = proc.tmpdir()
    local r = proc.mc({ "run", proc.write(dir .. "/x.lua", "print(require('mc.log').format('info', 'ok'))") },
      { cwd = dir, env = { LUA_PATH = "/nonexistent/?.lua" } })
    cleanup()
    assert.equal(0, r.code, r.stderr)
    assert.equal("at=info msg=ok\n", r.stdout)
  end)
end)
