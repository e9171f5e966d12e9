-- mc.new: `multiconnect new tenant ORG_ID` and `multiconnect new job NAME`:
-- write a commented starting file and its spec from tools/templates/, never
-- over an existing file, and say what to do next.
local host = require "mc.host"
local file = require "mc.file"
local template = require "mc.template"

local _M = {}

local USAGE = [[
usage: multiconnect new tenant ORG_ID   scripts/tenants/ORG_ID.lua and spec/tenants/ORG_ID_spec.lua
       multiconnect new job NAME        scripts/jobs/NAME.lua (dots are folders) and spec/jobs/NAME_spec.lua
]]

-- kind -> vars(name) -> vars | nil, err; files: {template, target} with ${} vars
local KINDS = {
  tenant = {
    vars = function(id)
      local full, err = require("lib.sfid").org_id(id)
      if not full then return nil, string.format("%q %s", id, err) end
      return { org_id = full }
    end,
    files = { { "tenant.lua.tmpl", "scripts/tenants/${org_id}.lua" },
              { "tenant_spec.lua.tmpl", "spec/tenants/${org_id}_spec.lua" } },
    next = "edit scripts/tenants/${org_id}.lua, then: "
      .. "bin/multiconnect check && bin/multiconnect test spec/tenants/${org_id}_spec.lua",
  },
  job = {
    vars = function(name)
      if not name:match("^[%l_][%w_]*$") and not name:match("^[%l_][%w_]*%.[%l_][%w_.]*[%w_]$") then
        return nil, string.format("%q: a job name is lower-case words joined by dots (reports.daily)", name)
      end
      if name:find("..", 1, true) then return nil, string.format("%q: empty part in the name", name) end
      return { name = name, path = name:gsub("%.", "/") }
    end,
    files = { { "job.lua.tmpl", "scripts/jobs/${path}.lua" }, { "job_spec.lua.tmpl", "spec/jobs/${name}_spec.lua" } },
    next = "edit scripts/jobs/${path}.lua, then: "
      .. "bin/multiconnect check && bin/multiconnect test spec/jobs/${name}_spec.lua",
  },
}

local function render(src, vars, name)
  return template.render(src, vars, { name = name })
end

local function fail(msg)
  io.stderr:write("multiconnect new: ", msg, "\n")
  return 1
end

-- The files to write, rendered, or nil, err (a template missing, a file present).
local function plan(kind, vars)
  local out = {}
  for _, f in ipairs(kind.files) do
    local src, err = file.read(host.root .. "/tools/templates/" .. f[1])
    if not src then return nil, "template tools/templates/" .. f[1] .. ": " .. err end
    local target = assert(render(f[2], vars, "path"))
    if file.exists(host.root .. "/" .. target) then
      return nil, target .. " exists already: edit it, or remove it first"
    end
    local text, terr = render(src, vars, f[1])
    if not text then return nil, terr end
    out[#out + 1] = { path = target, text = text }
  end
  return out
end

local function write(path, text)
  local dir = path:match("^(.*)/")
  if dir then os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'") end
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(text)
  f:close()
  return true
end

function _M.main(args)
  local kind, name = KINDS[args[1] or ""], args[2]
  if not kind or not name or args[3] then
    io.stderr:write(USAGE)
    return 2
  end
  local vars, err = kind.vars(name)
  if not vars then return fail(err) end
  local files, perr = plan(kind, vars)
  if not files then return fail(perr) end
  for _, f in ipairs(files) do
    local ok, werr = write(host.root .. "/" .. f.path, f.text)
    if not ok then return fail(werr) end
    io.stdout:write("wrote ", f.path, "\n")
  end
  io.stdout:write("next: ", assert(render(kind.next, vars, "next")), "\n")
  return 0
end

return _M
