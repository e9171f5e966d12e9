-- check: the application's part of `multiconnect check` (core/lua/mc/check.lua
-- compiles every file and checks the app and the schedule first). Here: every
-- tenant hook file and every mapping, checked as onboarding will use them, so a
-- mistake fails CI or the release phase instead of an org's onboarding.
--   check.run() -> { {file =, line =, message =, fix =}, ... }
local host = require "mc.host"
local json = require "mc.json"
local file = require "mc.file"
local lfs = require "lfs"
local hooks = require "lib.hooks"
local sfid = require "lib.sfid"
local tenant = require "lib.tenant"
local mapping = require "onboarding.mapping"

local _M = {}

-- An org id for checking default.lua's hooks, which apply to every org.
local ANY_ORG = assert(sfid.to18("00D000000000001"))

local function names(dir, suffix)
  local out = {}
  if lfs.attributes(dir, "mode") ~= "directory" then return out end
  for name in lfs.dir(dir) do
    if name:sub(-#suffix) == suffix then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function known_hooks()
  local list = {}
  for name in pairs(hooks.HOOKS) do list[#list + 1] = name end
  table.sort(list)
  return table.concat(list, ", ")
end

-- "x.lua:3: boom" -> 3, "boom"
local function at(err)
  local line, msg = tostring(err):match(":(%d+): (.*)$")
  return math.tointeger(tonumber(line)), msg or tostring(err)
end

-- org_of("00D....lua") -> the 18-character org id | nil, why
local function org_of(name)
  local id = name:match("^(%w+)%.lua$")
  if not id or (#id ~= 15 and #id ~= 18) then return nil end
  return sfid.org_id(id)
end

-- The mapping and schema a tenant would get, checked as the steps check them.
local function outcomes(add, shown, org_id, defines)
  local t = { org_id = org_id, org_name = "Check", admin_email = "admin@example.com",
    environment = "production", state = "received" }
  if defines.schema_name then
    local ok, name = hooks.run(t, "schema_name")
    local problem
    if ok then problem = tenant.schema_problem(name) else problem = name end
    if problem then
      add(shown, nil, problem, "return a lower-case name such as \"salesforce\" .. tenant.org_id:lower()")
    end
  end
  if defines.mapping then
    local base, berr = mapping.base(org_id)
    if not base then return add(shown, nil, berr, "fix the mapping file it names") end
    local ok, doc = hooks.run(t, "mapping", base)
    if not ok then return add(shown, at(doc), doc, "make the hook return a mapping document") end
    local valid, verr = mapping.validate(doc)
    if not valid then
      add(shown, nil, "the mapping hook returns a mapping Heroku Connect would refuse: " .. verr,
        "see the README's 'Mappings' for the document's shape")
    end
  end
end

local function tenant_file(add, dir, shown_dir, name)
  local shown = shown_dir .. "/" .. name
  local org_id = name == "default.lua" and ANY_ORG or org_of(name)
  if not org_id then
    return add(shown, nil,
      "never read: a tenant file is default.lua or named by its org id (00D + 12 or 15 more characters)",
      "rename it to <org_id>.lua, the id from Salesforce's Company Information page")
  end
  local shape, err = hooks.shape(dir .. "/" .. name, shown)
  if not shape then return add(shown, at(err), select(2, at(err)), "correct the file") end
  if type(shape) ~= "table" then
    return add(shown, nil, "returns a " .. shape .. ", not a table of hooks", "end the file with `return hooks`")
  end
  local defines, keys = {}, {}
  for key in pairs(shape) do keys[#keys + 1] = key end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local kind = shape[key]
    if not hooks.HOOKS[key] then
      add(shown, nil, "defines '" .. key .. "', which is not a hook", "the hooks are " .. known_hooks())
    elseif kind ~= "function" then
      add(shown, nil, "hook " .. key .. " is a " .. kind .. ", not a function",
        "define it as function hooks." .. key .. "(tenant, ...)")
    else
      defines[key] = true
    end
  end
  outcomes(add, shown, org_id, defines)
end

local function mapping_file(add, dir, name)
  local shown = "mappings/" .. name
  if name ~= "default.json" and not org_of(name:gsub("%.json$", ".lua")) then
    add(shown, nil, "never read: a mapping is default.json or named by its org id", "rename it to <org_id>.json")
  end
  local src, rerr = file.read(dir .. "/" .. name)
  if not src then return add(shown, nil, rerr, "make the file readable") end
  local doc, err = json.decode(src)
  if doc == nil then return add(shown, nil, "not JSON: " .. err, "correct the JSON") end
  local ok, verr = mapping.validate(doc)
  if not ok then add(shown, nil, verr, "see the README's 'Mappings' for the document's shape") end
end

function _M.run()
  local problems = {}
  local function add(path, line, message, fix)
    problems[#problems + 1] = { file = path, line = line, message = message, fix = fix }
  end
  local dir, shown = hooks.dir()
  for _, name in ipairs(names(dir, ".lua")) do tenant_file(add, dir, shown, name) end
  local mdir = host.root .. "/mappings"
  for _, name in ipairs(names(mdir, ".json")) do mapping_file(add, mdir, name) end
  return problems
end

return _M
