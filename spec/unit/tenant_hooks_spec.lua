local hooks = require "lib.hooks"
local host = require "mc.host"
local proc = require "support.process"

local A = "00D5g000004XyzAEAS"
local B = "00D5g000004XyzBEAS"

local function tenant(org_id)
  return { org_id = org_id, org_name = "Acme", admin_email = "admin@example.com",
    environment = "production", schema_name = mc.null, state = "received" }
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

describe("lib.hooks", function()
  local dir, cleanup, real_getenv, env

  -- TENANTS_DIR and the limits come from the environment through mc.env; the
  -- spec answers those names itself (and one case below runs the real binary).
  before_each(function()
    dir, cleanup = proc.tmpdir()
    proc.write(dir .. "/default.lua", slurp(host.root .. "/scripts/tenants/default.lua"))
    env = { TENANTS_DIR = dir, TENANT_HOOK_INSTRUCTIONS = "2000000" }
    real_getenv = os.getenv
    os.getenv = function(name) -- luacheck: ignore
      if env[name] ~= nil then return env[name] end
      return real_getenv(name)
    end
  end)

  after_each(function()
    os.getenv = real_getenv -- luacheck: ignore
    cleanup()
  end)

  local function override(org_id, src)
    proc.write(dir .. "/" .. org_id .. ".lua", src)
    return dir .. "/" .. org_id .. ".lua"
  end

  describe("the default hooks", function()
    it("name the schema after the lower-cased 18-char org id", function()
      assert.same({ true, "salesforce00d5g000004xyzaeas" }, { hooks.run(tenant(A), "schema_name") })
    end)

    it("pass the mapping and the mail through, and do nothing on a transition", function()
      local base = { version = 1, mappings = { { object_name = "Account", config = { fields = { Id = {} } } } } }
      assert.same({ true, base }, { hooks.run(tenant(A), "mapping", base) })
      local message = { subject = "Welcome", text = "Hi", html = "<p>Hi</p>" }
      assert.same({ true, message }, { hooks.run(tenant(A), "email", "welcome", message) })
      assert.same({ n = 1, true }, table.pack(hooks.run(tenant(A), "on_state", "received", "addon_provisioned")))
    end)

    it("follow every account with a handle, on X", function()
      local accounts = { { sfid = "001A", handle = "acme" }, { sfid = "001B", handle = " " }, { sfid = "001C" } }
      assert.same({ true, { { sfid = "001A", handle = "acme" } } },
        { hooks.run(tenant(A), "social_accounts", accounts) })
      assert.same({ true, "x" }, { hooks.run(tenant(A), "social_provider") })
    end)

    it("answer true with nothing for a known hook no file defines, and raise on an unknown one", function()
      proc.write(dir .. "/default.lua", "return {}")
      assert.same({ n = 1, true }, table.pack(hooks.run(tenant(A), "social_accounts")))
      assert.has_error(function() hooks.run(tenant(A), "mapings") end, "hooks.run: unknown hook mapings")
      assert.has_error(function() hooks.run(nil, "mapping") end, "hooks.run: tenant must be a table")
    end)

    it("are read from $MC_ROOT/scripts/tenants by default", function()
      env.TENANTS_DIR = nil
      local file = host.root .. "/scripts/tenants/" .. B .. ".lua"
      assert.is_nil(io.open(file)) -- no real org's override in the repository
      assert.same({ true, "salesforce00d5g000004xyzbeas" }, { hooks.run(tenant(B), "schema_name") })
    end)
  end)

  describe("an override", function()
    it("replaces one hook, may call the default, and leaves the others", function()
      override(A, [[
        local hooks = {}
        function hooks.mapping(tenant, base)
          local doc = default.mapping(tenant, base)
          doc.mappings[#doc.mappings + 1] = { object_name = "Contact", config = { fields = { Id = {} } } }
          doc.org = tenant.org_name
          return doc
        end
        function hooks.email(tenant, kind, message)
          if kind == "reminder" then return false end
          message.subject = "[" .. tenant.org_name .. "] " .. message.subject
          return message
        end
        return hooks
      ]])
      local ok, doc = hooks.run(tenant(A), "mapping", { version = 1, mappings = { { object_name = "Account" } } })
      assert.is_true(ok)
      assert.same({ version = 1, org = "Acme", mappings = { { object_name = "Account" },
        { object_name = "Contact", config = { fields = { Id = {} } } } } }, doc)
      assert.same({ true, false }, { hooks.run(tenant(A), "email", "reminder", { subject = "s", text = "t" }) })
      assert.same({ true, { subject = "[Acme] Hi", text = "t" } },
        { hooks.run(tenant(A), "email", "welcome", { subject = "Hi", text = "t" }) })
      assert.same({ true, "salesforce00d5g000004xyzaeas" }, { hooks.run(tenant(A), "schema_name") })
      -- only this org's file applies
      assert.same({ true, { subject = "Hi", text = "t" } },
        { hooks.run(tenant(B), "email", "welcome", { subject = "Hi", text = "t" }) })
    end)

    it("is found under the 15-character org id too; both names at once is an error naming them", function()
      override(A:sub(1, 15), "return { schema_name = function() return 'short_named' end }")
      assert.same({ true, "short_named" }, { hooks.run(tenant(A), "schema_name") })
      override(A, "return { schema_name = function() return 'long_named' end }")
      local ok, err = hooks.run(tenant(A), "schema_name")
      assert.is_nil(ok)
      assert.matches("both " .. dir:gsub("%p", "%%%0") .. "/" .. A .. "%.lua and .*/" .. A:sub(1, 15)
        .. "%.lua exist: keep one", err)
    end)

    it("may inherit from default through __index", function()
      override(A, [[return setmetatable({ schema_name = function() return "custom" end }, { __index = default })]])
      assert.same({ true, "custom" }, { hooks.run(tenant(A), "schema_name") })
      assert.same({ true, { a = 1 } }, { hooks.run(tenant(A), "mapping", { a = 1 }) })
    end)
  end)

  describe("a failing override", function()
    local function prefix(name) return "tenant hook " .. name .. " (" .. dir .. "/" .. A .. ".lua): " end

    it("that loops forever, even under pcall, fails with the budget", function()
      override(A, [[return { mapping = function() while true do pcall(function() while true do end end) end end }]])
      assert.same({ nil, prefix("mapping") .. "instruction budget exceeded" }, { hooks.run(tenant(A), "mapping", {}) })
    end)

    it("that outlasts TENANT_HOOK_TIMEOUT fails with timeout", function()
      env.TENANT_HOOK_INSTRUCTIONS = "1000000000000"
      env.TENANT_HOOK_TIMEOUT = "0.1"
      override(A, [[return { on_state = function() while true do end end }]])
      assert.same({ nil, prefix("on_state") .. "timeout" }, { hooks.run(tenant(A), "on_state", "a", "b") })
    end)

    it("that runs a backtracking pattern fails fast, whatever the deadline", function()
      env.TENANT_HOOK_INSTRUCTIONS = "1000000000000"
      env.TENANT_HOOK_TIMEOUT = "60"
      override(A, [[return { schema_name = function() return ("a"):rep(3000):find(".-.-.-.-b") end }]])
      assert.same({ nil, prefix("schema_name") .. dir .. "/" .. A
        .. ".lua:1: pattern too complex for a subject of 3000 bytes" },
        { hooks.run(tenant(A), "schema_name") })
    end)

    it("gets one budget for the whole run, not one per load and call", function()
      -- each file's load spends ~40% of the budget: alone either fits, together they do not
      env.TENANT_HOOK_INSTRUCTIONS = "1000000"
      local spin = "for i = 1, 400000 do end\n"
      proc.write(dir .. "/default.lua", spin .. slurp(host.root .. "/scripts/tenants/default.lua"))
      override(A, spin .. "return { schema_name = function() for i = 1, 400000 do end return 'x' end }")
      assert.same({ nil, prefix("schema_name") .. "instruction budget exceeded" },
        { hooks.run(tenant(A), "schema_name") })
      assert.same({ true, "salesforce00d5g000004xyzbeas" }, { hooks.run(tenant(B), "schema_name") })
    end)

    it("that allocates without bound fails with the memory cap", function()
      env.TENANT_HOOK_MEMORY = tostring(1024 * 1024)
      override(A, [[return { mapping = function()
        local t = {} while true do t[#t + 1] = ("x"):rep(100) .. #t end end }]])
      assert.same({ nil, prefix("mapping") .. "memory limit exceeded" }, { hooks.run(tenant(A), "mapping", {}) })
    end)

    it("that fills memory while loading fails with the memory cap", function()
      env.TENANT_HOOK_MEMORY = tostring(1024 * 1024)
      -- fills the cap, swallows the error and keeps it all: what runs next has no room
      override(A, [[hog = {} pcall(function() while true do hog[#hog + 1] = {} end end) return {}]])
      local ok, err = hooks.run(tenant(A), "schema_name")
      assert.is_nil(ok)
      assert.equal(prefix("schema_name") .. "memory limit exceeded", err)
    end)

    it("that raises gives its message with file and line", function()
      override(A, "return {\n  email = function() error('no mail for you') end,\n}\n")
      assert.same({ nil, prefix("email") .. dir .. "/" .. A .. ".lua:2: no mail for you" },
        { hooks.run(tenant(A), "email", "welcome", { subject = "s", text = "t" }) })
    end)

    it("that does not load, or returns no table, or returns a function, is named", function()
      override(A, "return {")
      local ok, err = hooks.run(tenant(A), "mapping", {})
      assert.is_nil(ok)
      assert.equal(prefix("mapping"), err:sub(1, #prefix("mapping")))
      override(A, "return 42")
      assert.same({ nil, prefix("mapping") .. "must return a table of hooks" }, { hooks.run(tenant(A), "mapping", {}) })
      override(A, "return { mapping = function() return print or load end }")
      assert.same({ nil, prefix("mapping") .. "result 1: cannot copy a function value" },
        { hooks.run(tenant(A), "mapping", {}) })
      override(A, "return { mapping = function() return io.open('/etc/passwd') end }")
      ok, err = hooks.run(tenant(A), "mapping", {})
      assert.is_nil(ok)
      assert.matches("attempt to index a nil value (global 'io')", err, 1, true)
    end)

    it("that breaks default.lua is named after default.lua", function()
      proc.write(dir .. "/default.lua", "return nil")
      assert.same({ nil, "tenant hook mapping (" .. dir .. "/default.lua): must return a table of hooks" },
        { hooks.run(tenant(A), "mapping", {}) })
    end)
  end)

  describe("isolation", function()
    it("shares no globals between two calls or two tenants", function()
      local probe = [[
        local hooks = {}
        function hooks.on_state()
          local seen = { calls = calls, leak = leak, str = string.leak, def = default.leak }
          calls = (calls or 0) + 1
          leak, string.leak, default.leak = "%s", "%s", "%s"
          return seen, calls
        end
        return hooks
      ]]
      override(A, probe:format("A", "A", "A"))
      override(B, probe:format("B", "B", "B"))
      assert.same({ true, {}, 1 }, { hooks.run(tenant(A), "on_state", "x", "y") })
      assert.same({ true, {}, 1 }, { hooks.run(tenant(A), "on_state", "x", "y") })
      assert.same({ true, {}, 1 }, { hooks.run(tenant(B), "on_state", "x", "y") })
    end)

    it("reads only files named by an 18-character org id", function()
      proc.write(dir .. "/evil.lua", "return { schema_name = function() return 'evil' end }")
      for _, id in ipairs({ "../" .. A, "evil", "00D5g000004XyzA", A .. "x", "00D5g000004Xyz/EAS" }) do
        assert.same({ nil, "tenant hook schema_name (" .. dir .. "/default.lua): "
          .. "org_id is not an 18-character org id" },
          { hooks.run(tenant(id), "schema_name") })
      end
    end)
  end)

  it("takes TENANTS_DIR from the environment of the real binary", function()
    override(A, "return { schema_name = function(t) return 'from_' .. t.org_id:sub(1, 3) end }")
    local script = proc.write(dir .. "/run.lua", ([[
      local hooks = require "lib.hooks"
      local ok, name = hooks.run({ org_id = %q }, "schema_name")
      print(ok, name)
    ]]):format(A))
    local r = proc.mc({ "run", script }, { env = { TENANTS_DIR = dir } })
    assert.equal(0, r.code, r.stderr)
    assert.equal("true\tfrom_00D\n", r.stdout)
  end)
end)
