-- lib.hooks: runs a tenant's hooks, written by the ISV per org, in an
-- isolate (mc.isolate): no os/io/debug, no bytecode, a memory cap and one
-- instruction budget and deadline for the whole run (loading both files, picking
-- and calling), so a runaway hook fails its step instead of stalling the worker.
--   hooks.run(tenant, name, ...) -> true, results... | nil, err
-- Each run builds a fresh isolate (nothing is shared between tenants or calls),
-- loads <dir>/default.lua as the global `default`, then <dir>/<org_id>.lua, if
-- there is one, as `override`, and calls override[name] or else default[name]
-- with (tenant, ...). A known hook that neither file defines answers true with
-- no results; an unknown hook name raises (a typo in the caller).
-- <dir> is $TENANTS_DIR, default $MC_ROOT/scripts/tenants. The files are read on
-- every run, so edits apply at the next hook without a reload.
local isolate = require "mc.isolate"
local config = require "config"
local sfid = require "lib.sfid"
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

_M.HOOKS = { mapping = true, schema_name = true, on_state = true, email = true, social_accounts = true,
  social_provider = true, database = true }

-- The 18-character org id (Lua patterns have no {15}). Only such ids become a
-- file name, so no path is ever built from other input.
local ORG_ID = "^00D" .. string.rep("%w", 15) .. "$"

-- Runs inside the isolate after both files: which table answers `name`. Indexing
-- (not rawget) so an override may inherit with setmetatable(t, {__index = default}).
local PICK = [[
return {
  pick = function(name)
    if type(default) ~= "table" then return "bad default" end
    if override ~= nil and type(override) ~= "table" then return "bad override" end
    if override ~= nil and override[name] ~= nil then return "override" end
    if default[name] ~= nil then return "default" end
    return false
  end,
}
]]

local function limits()
  return {
    memory = config.get("TENANT_HOOK_MEMORY"),
    instructions = config.get("TENANT_HOOK_INSTRUCTIONS"),
    timeout = config.get("TENANT_HOOK_TIMEOUT"),
  }
end

-- tenants_dir() -> the directory, and how errors name it (relative when default)
local function tenants_dir()
  local default = host.root .. "/scripts/tenants"
  local dir = config.get("TENANTS_DIR")
  return dir, dir == default and "scripts/tenants" or dir
end

-- read(path, optional) -> source | nil (optional and absent) | nil, err
local function read(path, optional)
  local src, err, missing = file.read(path)
  if not src and optional and missing then return nil end
  return src, err
end

local function fail(name, path, err)
  return nil, string.format("tenant hook %s (%s): %s", name, path, err)
end

-- Passes a call's results through, or prefixes its error.
local function answer(name, path, ok, ...)
  if not ok then return fail(name, path, ...) end
  return true, ...
end

local function run_in(iso, files, tenant, name, ...)
  local ok, err = iso:exec(files.default_src, files.default, "default")
  if not ok then return fail(name, files.default, err) end
  if files.override_src then
    ok, err = iso:exec(files.override_src, files.override, "override")
    if not ok then return fail(name, files.override, err) end
  end
  -- Can fail only through what the files left behind (memory, a broken `type`).
  local last = files.override_src and files.override or files.default
  ok, err = iso:exec(PICK, "=lib.hooks", "hooks_pick")
  if not ok then return fail(name, last, err) end
  local picked, which = iso:call("hooks_pick", "pick", name)
  if not picked then return fail(name, last, which) end
  if which == "bad default" then return fail(name, files.default, "must return a table of hooks") end
  if which == "bad override" then return fail(name, files.override, "must return a table of hooks") end
  if not which then return true end
  local path = which == "override" and files.override or files.default
  return answer(name, path, iso:call(which, name, tenant, ...))
end

-- override(dir, shown, org_id) -> shown name, source | shown name, nil (none)
-- | shown name, nil, err. The file may be named with the 18- or the
-- 15-character org id; both at once is a mistake to name, not to guess at.
local function override(dir, shown, org_id)
  local found
  for _, id in ipairs(sfid.file_names(org_id)) do
    local named = shown .. "/" .. id .. ".lua"
    local src, err = read(dir .. "/" .. id .. ".lua", true)
    if err then return named, nil, err end
    if src and found then
      return named, nil, "both " .. found.name .. " and " .. named .. " exist: keep one"
    end
    if src then found = { name = named, src = src } end
  end
  if not found then return shown .. "/" .. org_id .. ".lua" end
  return found.name, found.src
end

-- Runs inside the isolate after a file: what it defines, and each value's type.
local SHAPE = [[
return { of = function()
  if type(override) ~= "table" then return type(override) end
  local out = {}
  for k, v in pairs(override) do out[tostring(k)] = type(v) end
  return out
end }
]]

-- shape(path, shown) -> {name = type of value} | nil, err, line: the hooks a
-- tenant file defines, loaded as run() loads it (default.lua first, as the
-- global `default`); a file that does not return a table answers its type
-- instead. For `multiconnect check`, which names unknown hooks and non-functions.
function _M.shape(path, shown)
  local dir, dshown = tenants_dir()
  local src, err = read(path)
  if not src then return nil, err end
  local iso <close>, ierr = isolate.new(limits())
  if not iso then return nil, ierr end
  iso:arm()
  local dsrc = read(dir .. "/default.lua", true)
  if dsrc and path ~= dir .. "/default.lua" then iso:exec(dsrc, dshown .. "/default.lua", "default") end
  local ok, lerr = iso:exec(src, shown, "override")
  if not ok then return nil, lerr end
  assert(iso:exec(SHAPE, "=lib.hooks", "hooks_shape"))
  local _, shape = iso:call("hooks_shape", "of")
  return shape
end

-- tenants_dir() -> the hook files' directory, and how messages name it
_M.dir = tenants_dir

function _M.run(tenant, name, ...)
  if type(tenant) ~= "table" then error("hooks.run: tenant must be a table", 2) end
  if not _M.HOOKS[name] then error("hooks.run: unknown hook " .. tostring(name), 2) end
  local dir, shown = tenants_dir()
  local files = { default = shown .. "/default.lua" }
  local org_id = tenant.org_id
  if type(org_id) ~= "string" or not org_id:match(ORG_ID) then
    return fail(name, files.default, "org_id is not an 18-character org id")
  end
  local err
  files.default_src, err = read(dir .. "/default.lua")
  if not files.default_src then return fail(name, files.default, err) end
  files.override, files.override_src, err = override(dir, shown, org_id)
  if err then return fail(name, files.override, err) end

  local iso <close>, ierr = isolate.new(limits())
  if not iso then return fail(name, files.default, ierr) end
  -- Without arm each exec/call would get the full limits again: ~5x per run.
  iso:arm()
  return run_in(iso, files, tenant, name, ...)
end

return _M
