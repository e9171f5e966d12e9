-- One truth: every custom object and field a shipped mapping (mappings/*.json)
-- names exists in the package (force-app), with a type Heroku Connect maps; the
-- fields the app's social code reads and writes are the package's too; and the
-- permission set lets Connect's user see every mapped field. A real org without
-- them ends the import in BAD_CONFIG (docs/external-apis.md §1.6).
local host = require "mc.host"
local json = require "mc.json"
local file = require "mc.file"
local lfs = require "lfs"
package.path = host.root .. "/?.lua;" .. host.root .. "/scripts/?.lua;" .. package.path
local force_app = require "sandbox.force_app"
local tables = require "social.tables"

-- The package field types Connect maps to a column (docs/external-apis.md §1.10:
-- references varchar(18), text varchar(length), checkbox boolean, numbers double
-- precision, dates timestamps); not encrypted text nor compound fields.
local MAPPABLE = {
  Text = true, TextArea = true, LongTextArea = true, Email = true, Phone = true, Url = true,
  Picklist = true, AutoNumber = true, Checkbox = true, Number = true, Currency = true,
  Percent = true, Date = true, DateTime = true, Lookup = true, MasterDetail = true,
}

local function mapping_files()
  local out = {}
  for name in lfs.dir(host.root .. "/mappings") do
    if name:match("%.json$") then out[#out + 1] = "mappings/" .. name end
  end
  table.sort(out)
  return out
end

-- The package's own name of a mapped name: a managed org's "ns__Tweet__c" is
-- the package's Tweet__c (mappings name them without the namespace).
local function unprefixed(name)
  return name:match("^%a%w*__(.+__c)$") or name
end

local function custom(name) return name:match("__c$") ~= nil end

-- Every (object, field) pair of a mapping document whose object or field is custom.
local function custom_names(doc)
  local out = {}
  for _, m in ipairs(doc.mappings) do
    local object = unprefixed(m.object_name)
    if custom(object) then out[#out + 1] = { object = object } end
    for field in pairs(m.config.fields or {}) do
      if custom(field) then out[#out + 1] = { object = object, field = unprefixed(field) } end
    end
  end
  return out
end

describe("the package and the shipped mappings agree", function()
  local objects = force_app.objects()
  local files = mapping_files()

  it("ships at least the default mapping, which names custom objects and fields", function()
    assert.truthy(files[1])
    local doc = json.decode(assert(file.read(host.root .. "/mappings/default.json")))
    assert.is_true(#custom_names(doc) >= 10)
  end)

  for _, path in ipairs(files) do
    it(path .. ": every custom object and field is in force-app, with a type Connect maps", function()
      local doc = json.decode(assert(file.read(host.root .. "/" .. path)))
      for _, n in ipairs(custom_names(doc)) do
        local o = objects[n.object]
        assert.truthy(o, path .. ": no object " .. n.object .. " in " .. force_app.DIR)
        if n.field then
          local f = o.fields[n.field]
          assert.truthy(f, path .. ": no field " .. n.object .. "." .. n.field .. " in " .. force_app.DIR)
          assert.truthy(MAPPABLE[f.type], n.object .. "." .. n.field .. ": Connect cannot map type " .. f.type)
          assert.equal(n.field, f.full_name, f.path .. ": fullName differs from the file's name")
        end
      end
    end)

    it(path .. ": an upsert field is an external id of the package", function()
      local doc = json.decode(assert(file.read(host.root .. "/" .. path)))
      for _, m in ipairs(doc.mappings) do
        local upsert = m.config.upsert_field
        if type(upsert) == "string" and custom(upsert) then
          local f = objects[unprefixed(m.object_name)].fields[unprefixed(upsert)]
          assert.is_true(f.external_id, m.object_name .. "." .. upsert .. " must be an external id")
        end
      end
    end)
  end

  it("defines the tweet and handle fields the social code reads and writes", function()
    for key, field in pairs(tables.TWEET_FIELDS) do
      assert.truthy(objects.Tweet__c.fields[field], "social.tables " .. key .. ": no Tweet__c." .. field)
    end
    assert.truthy(objects.Account.fields.Twitter_Handle__c)
    assert.equal("Account", objects.Tweet__c.fields.Account__c.reference_to)
  end)

  it("grants every mapped custom field in the Multiconnect permission set", function()
    local set = assert(file.read(host.root
      .. "/force-app/main/default/permissionsets/Multiconnect.permissionset-meta.xml"))
    local granted = {}
    for block in set:gmatch("<fieldPermissions>(.-)</fieldPermissions>") do
      if block:match("<readable>true</readable>") then granted[block:match("<field>([^<]+)</field>")] = true end
    end
    for _, path in ipairs(files) do
      for _, n in ipairs(custom_names(json.decode(assert(file.read(host.root .. "/" .. path))))) do
        if n.field then
          assert.truthy(granted[n.object .. "." .. n.field], path .. ": " .. n.object .. "." .. n.field)
        end
      end
    end
  end)
end)
