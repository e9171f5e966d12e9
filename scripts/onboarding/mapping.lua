-- onboarding.mapping: the Heroku Connect mapping a tenant's connection imports
-- (docs/external-apis.md §1.6). Connect accepts any import and reports a bad object or field
-- only later, as a mapping in BAD_CONFIG (§1.6, plugin issue #97); validating here
-- fails the onboarding step at once, with every problem and where it is.
--   mapping.base(org_id)   mappings/<org_id>.json if there is one, else mappings/default.json
--   mapping.validate(doc)  true | nil, err, problems
--   mapping.prepare(doc)   the document to import: export-only metadata stripped
--   mapping.encode(doc)    JSON with keys sorted, so one mapping is always the same bytes
local json = require "mc.json"
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

local null = json.null

_M.MAX_MAPPINGS = 200
_M.MAX_PROBLEMS = 20

-- Connect documents no bounds for sf_polling_seconds; these are ours: 1 minute
-- (below Connect's smallest interval in any public client or fixture, 120 s, and
-- the UI's 2-minute choice) to one day. hm's mapping uses 120, 600 and 3600;
-- django-heroku-connect defaults to 600.
_M.MIN_POLLING_SECONDS = 60
_M.MAX_POLLING_SECONDS = 86400
-- A cap on sf_max_daily_api_calls, ours too: above any org's daily API allowance
-- (millions), and within what a mapping's JSON can carry exactly (mc.json writes
-- 14 digits; fuzz/targets/mapping.lua found 300016666666666 validated, then unwritable).
_M.MAX_DAILY_API_CALLS = 1000000000

-- Objects without an IsDeleted field (they are never in the recycle bin), so a
-- mapping of them cannot include it. User and RecordType: docs/external-apis.md §1.6; the
-- others from Salesforce's object reference [unverified against Connect].
_M.WITHOUT_ISDELETED = {
  user = true, recordtype = true, profile = true, userrole = true, organization = true,
  group = true, businesshours = true,
}

-- "__<suffix>" endings of custom API names: custom object or field, custom
-- metadata type, platform event, external object, big object, knowledge article,
-- relationship.
local SUFFIXES = { c = true, mdt = true, e = true, x = true, b = true, kav = true, r = true }

local TOP_KEYS = { version = true, mappings = true, connection = true }
local ENTRY_KEYS = { object_name = true, config = true }
local CONFIG_KEYS = {
  access = true, sf_polling_seconds = true, sf_notify_enabled = true, sf_max_daily_api_calls = true,
  fields = true, indexes = true, upsert_field = true,
  applied_at = true, revision = true, -- export-only metadata, dropped by prepare
}
local INDEX_KEYS = { unique = true }
local REQUIRED_FIELDS = { "Id", "SystemModstamp", "IsDeleted" }

-- ---- JSON shapes ----------------------------------------------------------------

local function is_array(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n == #v
end

-- A decoded JSON object: a table with string keys only (an empty table counts).
local function is_object(v)
  if type(v) ~= "table" then return false end
  for k in pairs(v) do
    if type(k) ~= "string" then return false end
  end
  return true
end

local function kind(v)
  if v == null then return "null" end
  if type(v) == "table" then return is_object(v) and "object" or "array" end
  return type(v)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  return keys
end

-- ---- names -------------------------------------------------------------------------

-- One part of an API name: a letter, then letters, digits and single underscores,
-- not ending in an underscore (a double underscore separates the parts).
local function valid_part(s, max)
  return #s >= 1 and #s <= max and s:find("^%a[%w_]*$") ~= nil and not s:find("_$")
end

-- A Salesforce API name: [namespace__]Name[__suffix]. Name up to 40 characters,
-- the namespace prefix up to 15 (Salesforce's limits).
function _M.valid_api_name(name)
  if type(name) ~= "string" then return false end
  local parts, from = {}, 1
  while true do
    local i = name:find("__", from, true)
    parts[#parts + 1] = name:sub(from, (i or 0) - 1)
    if not i then break end
    from = i + 2
  end
  local ns, base, suffix
  if #parts == 1 then base = parts[1]
  elseif #parts == 2 then base, suffix = parts[1], parts[2]
  elseif #parts == 3 then ns, base, suffix = parts[1], parts[2], parts[3]
  else return false end
  if suffix and not SUFFIXES[suffix:lower()] then return false end
  if ns and not valid_part(ns, 15) then return false end
  return valid_part(base, 40)
end

-- ---- validation --------------------------------------------------------------------

local function checker()
  local problems, more = {}, 0
  local function add(path, message)
    if #problems < _M.MAX_PROBLEMS then problems[#problems + 1] = path .. ": " .. message
    else more = more + 1 end
  end
  local function result()
    if #problems == 0 then return true end
    local text = table.concat(problems, "; ")
    if more > 0 then text = text .. string.format("; and %d more", more) end
    return nil, "invalid mapping: " .. text, problems
  end
  return add, result
end

local function unknown_keys(add, path, t, allowed)
  for _, k in ipairs(sorted_keys(t)) do
    if not allowed[k] then add(path and path .. "." .. k or k, "unknown key") end
  end
end

-- expect(add, path, value, want, required) -> true when value has the JSON kind
-- want ("object", "array", "string", "integer", "boolean"); JSON's {} and [] both
-- decode to an empty table, which passes for either.
local function expect(add, path, value, want, required)
  if value == nil then
    if required then add(path, "is required") end
    return false
  end
  local got = kind(value)
  if got == want or (want == "integer" and math.type(value) == "integer")
      or (type(value) == "table" and next(value) == nil and (want == "object" or want == "array")) then
    return true
  end
  if got == "number" and want == "integer" then got = "a fraction" end
  add(path, string.format("must be %s %s, got %s", want:find("^[aeiou]") and "an" or "a", want, got))
  return false
end

-- fields -> lower-cased name -> spelling as mapped
local function check_fields(add, path, object_name, fields)
  local mapped = {}
  if not expect(add, path, fields, "object", true) then return mapped end
  for _, name in ipairs(sorted_keys(fields)) do
    local fpath = path .. "." .. name
    if not _M.valid_api_name(name) then add(fpath, "not a valid Salesforce field API name")
    elseif mapped[name:lower()] then add(fpath, "mapped twice (also as " .. mapped[name:lower()] .. ")")
    else mapped[name:lower()] = name end
    expect(add, fpath, fields[name], "object", true)
  end
  for _, required in ipairs(REQUIRED_FIELDS) do
    local exempt = required == "IsDeleted" and type(object_name) == "string"
      and _M.WITHOUT_ISDELETED[object_name:lower()]
    if not mapped[required:lower()] and not exempt then
      add(path, "must include " .. required .. " (Heroku Connect requires it)")
    end
  end
  return mapped
end

local function check_indexes(add, path, indexes, mapped)
  local indexed = {}
  if not expect(add, path, indexes, "object", false) then return indexed end
  for _, name in ipairs(sorted_keys(indexes)) do
    local ipath = path .. "." .. name
    if not mapped[name:lower()] then add(ipath, "not a mapped field") end
    indexed[name:lower()] = true
    if expect(add, ipath, indexes[name], "object", true) then
      unknown_keys(add, ipath, indexes[name], INDEX_KEYS)
      expect(add, ipath .. ".unique", indexes[name].unique, "boolean", false)
    end
  end
  return indexed
end

local function check_config(add, path, object_name, c)
  if not expect(add, path, c, "object", true) then return end
  unknown_keys(add, path, c, CONFIG_KEYS)
  if c.access == nil then add(path .. ".access", "is required")
  elseif c.access ~= "read_only" and c.access ~= "read_write" then
    add(path .. ".access", "must be read_only or read_write")
  end
  if expect(add, path .. ".sf_polling_seconds", c.sf_polling_seconds, "integer", true)
      and (c.sf_polling_seconds < _M.MIN_POLLING_SECONDS or c.sf_polling_seconds > _M.MAX_POLLING_SECONDS) then
    add(path .. ".sf_polling_seconds", string.format("must be within %d..%d",
      _M.MIN_POLLING_SECONDS, _M.MAX_POLLING_SECONDS))
  end
  expect(add, path .. ".sf_notify_enabled", c.sf_notify_enabled, "boolean", false)
  if expect(add, path .. ".sf_max_daily_api_calls", c.sf_max_daily_api_calls, "integer", false)
      and (c.sf_max_daily_api_calls < 1 or c.sf_max_daily_api_calls > _M.MAX_DAILY_API_CALLS) then
    add(path .. ".sf_max_daily_api_calls", string.format("must be within 1..%d", _M.MAX_DAILY_API_CALLS))
  end
  expect(add, path .. ".applied_at", c.applied_at, "string", false)
  expect(add, path .. ".revision", c.revision, "integer", false)
  local mapped = check_fields(add, path .. ".fields", object_name, c.fields)
  local indexed = check_indexes(add, path .. ".indexes", c.indexes, mapped)
  local upsert = c.upsert_field
  if expect(add, path .. ".upsert_field", upsert, "string", false) then
    if not mapped[upsert:lower()] then add(path .. ".upsert_field", upsert .. " is not a mapped field")
    elseif not indexed[upsert:lower()] then
      add(path .. ".upsert_field", upsert .. " needs an index (an unindexed external id breaks writes)")
    end
  end
end

-- validate(doc) -> true | nil, err, problems. err is "invalid mapping: " and every
-- problem (up to MAX_PROBLEMS) as "path: message", paths like
-- mappings[2].config.access (entries counted from 1); problems is their list.
function _M.validate(doc)
  local add, result = checker()
  if not expect(add, "(document)", doc, "object", true) then return result() end
  unknown_keys(add, nil, doc, TOP_KEYS)
  if doc.version == nil then add("version", "is required")
  elseif doc.version ~= 1 then add("version", "must be 1") end
  expect(add, "connection", doc.connection, "object", false)
  local list = doc.mappings
  if not expect(add, "mappings", list, "array", true) then return result() end
  if #list == 0 then add("mappings", "must not be empty") end
  if #list > _M.MAX_MAPPINGS then add("mappings", "more than " .. _M.MAX_MAPPINGS .. " objects") end
  local seen = {}
  for i, entry in ipairs(list) do
    local path = string.format("mappings[%d]", i)
    if expect(add, path, entry, "object", true) then
      unknown_keys(add, path, entry, ENTRY_KEYS)
      local name = entry.object_name
      if expect(add, path .. ".object_name", name, "string", true) then
        if not _M.valid_api_name(name) then
          add(path .. ".object_name", string.format("%q is not a valid Salesforce API name", name))
        elseif seen[name:lower()] then
          add(path .. ".object_name", string.format("%s is mapped twice (also mappings[%d])", name, seen[name:lower()]))
        else
          seen[name:lower()] = i
        end
      end
      check_config(add, path .. ".config", name, entry.config)
    end
  end
  return result()
end

-- ---- prepare / encode -------------------------------------------------------------

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return out
end

local EXPORT_ONLY = { applied_at = true, revision = true }

-- prepare(doc) -> a new document to import: version 1, the mappings sorted by
-- object name, without the export-only metadata (the `connection` block names the
-- org it was exported from; applied_at and revision are Connect's bookkeeping).
-- Idempotent; doc is not changed.
function _M.prepare(doc)
  if type(doc) ~= "table" then
    error("bad argument #1 to 'prepare' (table expected, got " .. type(doc) .. ")", 2)
  end
  local out = { version = 1, mappings = {} }
  for i, entry in ipairs(type(doc.mappings) == "table" and doc.mappings or {}) do
    local m = copy(entry)
    if type(m) == "table" and type(m.config) == "table" then
      for k in pairs(EXPORT_ONLY) do m.config[k] = nil end
    end
    out.mappings[i] = m
  end
  local function key(m) return type(m) == "table" and tostring(m.object_name):lower() or "" end
  table.sort(out.mappings, function(a, b) return key(a) < key(b) end)
  return out
end

-- encode(doc) -> JSON text with object keys sorted (mc.json keeps Lua's order,
-- which differs from run to run), so the same mapping is always the same bytes
-- and can be compared or hashed. An empty table is written {}. nil, err for what
-- JSON cannot hold (an integer of more than 14 digits: mc.json).
function _M.encode(doc)
  if type(doc) ~= "table" then return json.encode(doc) end
  local parts = {}
  if next(doc) ~= nil and is_array(doc) then
    for i, v in ipairs(doc) do
      local text, err = _M.encode(v)
      if not text then return nil, err end
      parts[i] = text
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  for _, k in ipairs(sorted_keys(doc)) do
    local text, err = _M.encode(doc[k])
    if not text then return nil, err end
    parts[#parts + 1] = json.encode(k) .. ":" .. text
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- ---- the base document ---------------------------------------------------------

-- read_json(path, label) -> doc | nil (no such file) | false, err
local function read_json(path, label)
  local text, err, missing = file.read(path)
  if not text then
    if missing then return nil end
    return false, label .. ": " .. tostring(err)
  end
  local doc, decode_err = json.decode(text)
  if doc == nil then return false, label .. ": " .. tostring(decode_err) end
  return doc
end

-- base(org_id[, dir]) -> doc | nil, err: the org's own mappings/<org_id>.json when
-- it exists, else mappings/default.json (dir defaults to $MC_ROOT/mappings). The
-- org id is used as it is (15 or 18 characters, case kept).
function _M.base(org_id, dir)
  if type(org_id) ~= "string" then
    error("bad argument #1 to 'base' (string expected, got " .. type(org_id) .. ")", 2)
  end
  if not org_id:find("^%w+$") or (#org_id ~= 15 and #org_id ~= 18) then
    return nil, "not a Salesforce org id: " .. string.format("%q", org_id:sub(1, 40))
  end
  dir = dir or (host.root .. "/mappings")
  local names = { org_id .. ".json" }
  if #org_id == 18 then names[2] = org_id:sub(1, 15) .. ".json" end -- the id as Salesforce's setup page shows it
  local found
  for _, name in ipairs(names) do
    local doc, err = read_json(dir .. "/" .. name, "mappings/" .. name)
    if doc == false then return nil, err end
    if doc and found then return nil, "both mappings/" .. found .. " and mappings/" .. name .. " exist: keep one" end
    if doc then found, names.doc = name, doc end
  end
  if found then return names.doc end
  local doc, err = read_json(dir .. "/default.json", "mappings/default.json")
  if doc then return doc end
  if doc == false then return nil, err end
  return nil, "mappings/default.json: not found in " .. dir
end

return _M
