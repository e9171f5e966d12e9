-- The escapes a tenant's hook file may try (issue 18, "Tenant scripts"), each
-- run as onboarding runs hooks (lib.hooks: a fresh isolate per run, one
-- instruction budget, a deadline and a memory cap). Each must be stopped within
-- its budget -- the deadline plus 50 ms at most -- and fail only its own run:
-- the other tenant's hook, run next in the same process, answers as usual.
-- mc.isolate's own specs (isolate_spec.lua) test the mechanisms one by one;
-- tenant_hooks_spec.lua the hooks' loading and naming.
local hooks = require "lib.hooks"
local host = require "mc.host"
local file = require "mc.file"
local proc = require "support.process"
local env_vars = require "support.env_vars"

local A = "00D5g000004XyzAEAS"
local B = "00D5g000004XyzBEAS"
local TIMEOUT = 0.5 -- TENANT_HOOK_TIMEOUT, seconds
local SLACK = 0.05

local function tenant(org_id)
  return { org_id = org_id, org_name = "Acme", admin_email = "admin@example.com",
    environment = "production", schema_name = mc.null, state = "received" }
end

-- name, the hook file (its schema_name hook is what is run), what the error says
local ESCAPES = {
  { "an endless loop", [[return { schema_name = function() while true do end end }]], "instruction budget exceeded" },
  { "a loop under pcall and xpcall",
    [[return { schema_name = function()
        while true do pcall(function() while true do end end); xpcall(function() while true do end end, print) end
      end }]], "instruction budget exceeded" },
  { "a loop in a coroutine created while the file loaded",
    [[local co = coroutine.create(function() while true do end end)
      return { schema_name = function() while true do coroutine.resume(co) end end }]], "instruction budget exceeded" },
  { "a loop in a coroutine.wrap created earlier, under pcall",
    [[local w = coroutine.wrap(function() while true do pcall(function() while true do end end) end end)
      return { schema_name = function() while true do pcall(w) end end }]], "instruction budget exceeded" },
  { "a loop in the file itself, before any hook", [[while true do end]], "instruction budget exceeded" },
  { "a table bomb",
    [[return { schema_name = function() local t = {} while true do t[#t + 1] = { #t } end end }]],
    "memory limit exceeded" },
  { "a string bomb by concatenation",
    [[return { schema_name = function() local s = "x" while true do s = s .. s end end }]], "memory limit exceeded" },
  { "a string.rep bomb", [[return { schema_name = function() return ("x"):rep(1 << 40) end }]], "" },
  { "a string.rep bomb under pcall, kept",
    [[keep = {}
      return { schema_name = function()
        while true do pcall(function() keep[#keep + 1] = ("y"):rep(1 << 20) .. #keep end) end
      end }]], "" }, -- the cap, or the deadline: the caught errors go on until it
  { "bytecode through load",
    [[return { schema_name = function()
        local f, err = load("\27Lua\84\0\25\147\13\10\26\10\4\8\8", "x", "bt")
        error(f and "bytecode loaded" or err, 0)
      end }]], "binary chunk" },
  { "debug", [[return { schema_name = function() return debug.getregistry() end }]], "global 'debug'" },
  { "os", [[return { schema_name = function() return os.execute("id") end }]], "global 'os'" },
  { "io", [[return { schema_name = function() return io.open("/etc/passwd"):read("a") end }]], "global 'io'" },
  { "package", [[return { schema_name = function() return package.loadlib("libc.so.6", "system") end }]],
    "global 'package'" },
  { "require of a C module", [[return { schema_name = function() return require("socket.core") end }]],
    "global 'require'" },
  { "dofile and loadfile", [[return { schema_name = function() return (dofile or loadfile)("/etc/passwd") end }]],
    "a nil value" },
  { "the string metatable",
    [[return { schema_name = function() getmetatable("").__index = { lower = function() return "pwned" end } end }]],
    "attempt to index a boolean value" },
  { "a __gc metamethod (run with hooks off)",
    [[return { schema_name = function() setmetatable({}, { __gc = function() while true do end end }) end }]],
    "__gc" },
}

describe("tenant hook escapes", function()
  local dir, cleanup, restore_env
  local slowest, slowest_name, stopped = 0, "", 0
  teardown(function()
    print(string.format("\nescapes: %d of %d stopped; the slowest, %s, after %.3f s (deadline %.1f s)",
      stopped, #ESCAPES, slowest_name, slowest, TIMEOUT))
  end)

  before_each(function()
    dir, cleanup = proc.tmpdir()
    proc.write(dir .. "/default.lua", assert(file.read(host.root .. "/scripts/tenants/default.lua")))
    -- the configuration, answered in-process
    restore_env = env_vars.set({ TENANTS_DIR = dir, TENANT_HOOK_INSTRUCTIONS = "50000000",
      TENANT_HOOK_TIMEOUT = tostring(TIMEOUT), TENANT_HOOK_MEMORY = tostring(4 * 1024 * 1024) })
  end)
  after_each(function()
    restore_env()
    cleanup()
  end)

  for _, case in ipairs(ESCAPES) do
    local name, src, says = case[1], case[2], case[3]
    it("stops " .. name .. " within its budget, and fails only that tenant's run", function()
      proc.write(dir .. "/" .. A .. ".lua", src)
      local t0 = host.now()
      local ok, err = hooks.run(tenant(A), "schema_name")
      local took = host.now() - t0
      assert.is_nil(ok, name .. " was not stopped")
      assert.matches("tenant hook schema_name", err, 1, true)
      assert.matches(says, err, 1, true)
      if took > slowest then slowest, slowest_name = took, name end
      assert.truthy(took < TIMEOUT + SLACK, string.format("%s stopped after %.3f s", name, took))
      stopped = stopped + 1
      assert.same({ true, "salesforce" .. B:lower() }, { hooks.run(tenant(B), "schema_name") })
    end)
  end

  it("shows a hook nothing of the host or of another tenant: globals, registry, data", function()
    -- tenant B leaves a global and a string field; tenant A looks for them and
    -- for anything of the host (mc, the database, the process)
    proc.write(dir .. "/" .. B .. ".lua", [[secret = "B's token"; string.secret = secret
      return { schema_name = function(t) stash = t; return "salesforce00d5g000004xyzbeas" end }]])
    proc.write(dir .. "/" .. A .. ".lua", [[return { schema_name = function(t)
        local seen = {}
        local found = table.pack(secret, string.secret, stash, mc, rawget(_G, "mc"), rawget(_G, "package"),
          rawget(_G, "require"), rawget(_G, "debug"), getmetatable(_G))
        for i = 1, found.n do seen[i] = tostring(found[i]) end
        for k in pairs(t) do if k ~= "org_id" and k ~= "org_name" and k ~= "admin_email" and k ~= "environment"
          and k ~= "schema_name" and k ~= "state" then seen[#seen + 1] = k end end
        return table.concat(seen, ",") .. "|" .. t.org_id
      end }]])
    assert.same({ true, "salesforce00d5g000004xyzbeas" }, { hooks.run(tenant(B), "schema_name") })
    assert.same({ true, "nil,nil,nil,nil,nil,nil,nil,nil,nil|" .. A }, { hooks.run(tenant(A), "schema_name") })
  end)
end)
