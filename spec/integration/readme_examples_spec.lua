-- Every `lua` example in README.md runs. An example whose first line names a file
-- (`-- scripts/app.lua`, `-- hello.lua`) is written into a copy of the project and
-- run the way that kind of file runs; any other is a snippet, run in this process
-- with mail going to an SMTP sink and jobs to a Redis database of its own.
-- (docs/lua-api.md's examples: lua_api_doc_spec.lua; docs/guide.md: guide_spec.lua.)
local proc = require "support.process"
local md = require "support.markdown"
local isv = require "support.isv"
local redis_db = require "support.redis_db"
local host = require "mc.host"
local file = require "mc.file"
local json = require "mc.json"
local jobs = require "mc.jobs"

local readme = assert(file.read(host.root .. "/README.md"))
local examples = md.code_blocks(readme, "lua")

-- How each kind of file is run, in the copy at root -> true | nil, why
local RUNNERS = {
  { "^scripts/app%.lua$", function(root)
      local app = assert(loadfile(root .. "/scripts/app.lua"))()
      local status, body = require("mc.web").handle(app, "GET", "/organizations/00Dx", nil, "readme")
      return status == 200 and json.decode(body).org_id == "00Dx", "GET answered " .. status
    end },
  { "^scripts/schedule%.lua$", function(root)
      local res = proc.mc({ "clock", "--check" }, { cwd = root, env = { MC_ROOT = root, MC_DOTENV = "off" } })
      return res.code == 0, res.stdout .. res.stderr
    end },
  { "^scripts/jobs/(.+)%.lua$", function(root, name)
      local res = proc.mc({ "run", "jobs:" .. name:gsub("/", "."), '["acme", 7]' },
        { cwd = root, env = { MC_ROOT = root, MC_DOTENV = "off" } })
      return res.code == 0, res.stdout .. res.stderr
    end },
  { "^[%w_]+%.lua$", function(root, _, path)
      local res = proc.mc({ "run", path, '{"a": 1}' }, { cwd = root, env = { MC_ROOT = root, MC_DOTENV = "off" } })
      return res.code == 0 and res.stdout:find('"items":[]', 1, true) ~= nil, res.stdout .. res.stderr
    end },
}

local function runner(path)
  for _, r in ipairs(RUNNERS) do
    local cap = path:match(r[1])
    if cap then return r[2], cap end
  end
end

describe("README.md's Lua examples", function()
  local root, cleanup
  setup(function()
    root, cleanup = proc.copy_project({ "scripts", "mappings" })
    for _, ex in ipairs(examples) do
      local path = ex.code:match("^%-%- ([%w_./]+%.lua)")
      if path then proc.write_files(root, { [path] = ex.code .. "\n" }) end
    end
  end)
  teardown(function() cleanup() end)

  it("are found", function() assert.is_true(#examples >= 6, #examples .. " examples") end)

  it("leave a project that `multiconnect check` passes", function()
    local res = proc.mc({ "check" }, { cwd = root, env = { MC_ROOT = root, MC_DOTENV = "off", TENANTS_DIR = false } })
    assert.equal(0, res.code, res.stderr)
  end)

  for _, ex in ipairs(examples) do
    local path = ex.code:match("^%-%- ([%w_./]+%.lua)")
    it("runs README.md:" .. ex.line .. (path and (" (" .. path .. ")") or " (a snippet)"), function()
      if path then
        local run, cap = runner(path)
        assert.truthy(run, "README.md:" .. ex.line .. ": no way known to run " .. path)
        local ok, why = run(root, cap, path)
        assert.is_true(ok, why)
        return
      end
      local box <close> = isv.mailbox() -- luacheck: ignore 211 (held only to be closed: captures the example's mail)
      local db = redis_db.open(27)
      jobs.use(db.r)
      local chunk = assert(load(ex.code, "=README.md:" .. ex.line, "t", setmetatable({}, { __index = _G })))
      local ok, err = xpcall(chunk, debug.traceback)
      jobs.use(nil)
      db:close()
      assert.is_true(ok, err)
    end)
  end
end)
