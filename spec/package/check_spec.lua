-- tools/package/check.mjs, the package's offline checks (apex-parser, then
-- source-deploy-retrieve's conversion), run as `make test` runs it: the real
-- node and the npm packages `make setup` installed. On the repository it must
-- pass; on scratch copies with one thing broken it must fail naming the file.
local host = require "mc.host"
local proc = require "support.process"
local lfs = require "lfs"

local CHECK = host.root .. "/tools/package/check.mjs"
local MODULES = host.root .. "/tools/package/node_modules"

local function check(dir)
  local argv = { "node", CHECK }
  if dir then argv[3] = dir end
  local r = proc.run(argv)
  -- a checkout without the npm packages fails here, saying what to do
  assert(r.code ~= 2, r.stderr)
  return r
end

-- The project's Apex files, counted apart from the checker.
local function apex_files(dir, n)
  n = n or 0
  for name in lfs.dir(dir) do
    local path = dir .. "/" .. name
    if name:sub(1, 1) ~= "." then
      if lfs.attributes(path, "mode") == "directory" then n = apex_files(path, n)
      elseif name:match("%.cls$") or name:match("%.trigger$") then n = n + 1 end
    end
  end
  return n
end

-- names(stderr, path) -> the "line:column: message" the checker gave for path
local function names(stderr, path)
  local at = stderr:find(path .. ":", 1, true)
  return at and stderr:sub(at + #path + 1):match("^(%d+:%d+: [^\n]*)")
end

describe("tools/package/check.mjs", function()
  local dir, cleanup

  before_each(function()
    dir, cleanup = proc.tmpdir()
    assert(os.execute("cp -r " .. proc.quote(host.root .. "/force-app")
      .. " " .. proc.quote(host.root .. "/sfdx-project.json")
      .. " " .. proc.quote(dir)))
  end)
  after_each(function() cleanup() end)

  local CLASSES = "force-app/main/default/classes/"

  it("passes on the repository's package: every Apex file parses, the source converts", function()
    local r = check()
    assert.equal(0, r.code, r.stderr)
    local parsed, converted = r.stdout:match("package check: (%d+) Apex files parse; (%d+) components convert")
    assert.equal(apex_files(host.root .. "/force-app"), tonumber(parsed))
    assert.is_true(tonumber(parsed) >= 10)
    assert.is_true(tonumber(converted) > tonumber(parsed)) -- objects, page, settings besides the classes
  end)

  it("fails on a class with a syntax error, naming its file and line", function()
    proc.write(dir .. "/" .. CLASSES .. "Broken.cls", "public class Broken {\n    void f( {\n    }\n}\n")
    proc.write(dir .. "/" .. CLASSES .. "Broken.cls-meta.xml",
      assert(io.open(host.root .. "/" .. CLASSES .. "Connections.cls-meta.xml")):read("a"))
    local r = check(dir)
    assert.equal(1, r.code, r.stdout)
    assert.matches("^2:%d+: mismatched input", names(r.stderr, CLASSES .. "Broken.cls"))
    assert.matches("package check: 1 problem", r.stderr, 1, true)
  end)

  it("fails on a broken line in a class the repository ships", function()
    local path = dir .. "/" .. CLASSES .. "AuthConnection.cls"
    local src = assert(io.open(path)):read("a")
    local call = "Connections.store(connectionId, authorizeUrl);"
    local at = assert(src:find(call, 1, true))
    local line = select(2, src:sub(1, at):gsub("\n", "")) + 1
    proc.write(path, src:sub(1, at - 1) .. "Connections.store(connectionId,;" .. src:sub(at + #call))
    local r = check(dir)
    assert.equal(1, r.code, r.stdout)
    assert.matches("^" .. line .. ":%d+: ", names(r.stderr, CLASSES .. "AuthConnection.cls"))
  end)

  it("fails on metadata that is not XML, naming the file", function()
    local field = "force-app/main/default/objects/Tweet__c/fields/Text__c.field-meta.xml"
    proc.write(dir .. "/" .. field, "<CustomField><type>Text</type>\n")
    local r = check(dir)
    assert.equal(1, r.code, r.stdout)
    assert.matches("^%d+:%d+: InvalidTag: Unclosed tag 'CustomField'", names(r.stderr, field))
  end)

  it("fails on a class without its -meta.xml (it would not be deployed)", function()
    proc.write(dir .. "/" .. CLASSES .. "Orphan.cls", "public class Orphan {}\n")
    local r = check(dir)
    assert.equal(1, r.code, r.stdout)
    assert.equal("1:1: belongs to no metadata component: it would not be deployed",
      names(r.stderr, CLASSES .. "Orphan.cls"))
  end)

  it("without its npm packages says to run make setup, and fails", function()
    -- the checker alone in a scratch tools/package: node finds no node_modules
    os.execute("mkdir -p " .. proc.quote(dir .. "/tools/package"))
    proc.write(dir .. "/tools/package/check.mjs", assert(io.open(CHECK)):read("a"))
    local r = proc.run({ "node", dir .. "/tools/package/check.mjs", dir })
    assert.equal(2, r.code)
    assert.matches("run `make setup`", r.stderr, 1, true)
    assert.truthy(lfs.attributes(MODULES, "mode") == "directory",
      "tools/package/node_modules is missing: run `make setup` (npm ci in tools/package)")
  end)
end)
