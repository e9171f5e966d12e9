-- sandbox.force_app: the objects and fields the Salesforce package defines, read
-- from its source (force-app/main/default/objects), so that the simulated org
-- (sandbox.connect_org) and the specs know one truth: the package's metadata.
--   force_app.objects([root]) -> { [object API name] = {
--       custom = true for a custom object (…__c, …__mdt),
--       name_type = the Name field's type (AutoNumber, Text) or nil,
--       fields = { [field API name] = { type = "Text", length = 255, reference_to = "Account",
--                                       external_id = true|false, full_name =, path = its file } } } }
--   force_app.DIR: the objects folder, relative to the repository
-- The files are Salesforce's own XML, written one element a line; simple
-- string matching of the root's direct children (4-space indent) is enough
-- and keeps nested elements (a picklist's values) out of the way.
local lfs = require "lfs"
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

_M.DIR = "force-app/main/default/objects"

-- top(xml, tag) -> the text of a direct child of the root element, or nil
local function top(xml, tag)
  return xml:match("\n    <" .. tag .. ">([^<]*)</" .. tag .. ">")
end

local function entries(dir)
  local out = {}
  if not file.exists(dir) then return out end
  for name in lfs.dir(dir) do
    if name:sub(1, 1) ~= "." then out[#out + 1] = name end
  end
  table.sort(out)
  return out
end

local function field_of(path)
  local xml = assert(file.read(path))
  local t = top(xml, "type")
  if not t then error("sandbox.force_app: no <type> in " .. path, 0) end
  return { type = t, length = tonumber(top(xml, "length") or ""), reference_to = top(xml, "referenceTo"),
    external_id = top(xml, "externalId") == "true", full_name = top(xml, "fullName"), path = path }
end

local function object_of(dir, name)
  local o = { custom = name:match("__%a+$") ~= nil, fields = {} }
  local meta = file.read(dir .. "/" .. name .. ".object-meta.xml")
  if meta then o.name_type = (meta:match("<nameField>.-<type>([^<]*)</type>.-</nameField>")) end
  for _, f in ipairs(entries(dir .. "/fields")) do
    local api = f:match("^(.+)%.field%-meta%.xml$")
    if api then o.fields[api] = field_of(dir .. "/fields/" .. f) end
  end
  return o
end

function _M.objects(root)
  local base = (root or host.root) .. "/" .. _M.DIR
  -- no package, no custom objects: every import would go BAD_CONFIG, so say why now
  if not file.exists(base) then error("sandbox.force_app: no " .. base .. " (the package's objects)", 2) end
  local out = {}
  for _, name in ipairs(entries(base)) do
    out[name] = object_of(base .. "/" .. name, name)
  end
  return out
end

return _M
