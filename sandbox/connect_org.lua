-- sandbox.connect_org: the simulated Salesforce org behind the Connect stand-in:
-- which objects and fields exist (an import naming others goes BAD_CONFIG), their
-- Postgres column types (docs/external-apis.md §1.10), and a few deterministic records per object.
-- The custom objects and fields are the package's (force-app, read by
-- sandbox.force_app), so a mapping naming a field the package does not define
-- fails here as it would in a real org; standard fields of standard objects are
-- Salesforce's and are listed below. Every custom object and field also exists
-- under the namespace NAMESPACE (a managed package's names: hcpoc__Tweet__c).
local force_app = require "sandbox.force_app"

local _M = {}

_M.NAMESPACE = "hcpoc" -- the original package's prefix

local SYSTEM = {
  Id = "id", SystemModstamp = "datetime", IsDeleted = "boolean", CreatedDate = "datetime",
}

-- Salesforce's own fields of the standard objects the mappings use
local STANDARD = {
  Account = { Name = "string", Industry = "string", AnnualRevenue = "double", OwnerId = "reference" },
  Contact = {
    FirstName = "string", LastName = "string", Name = "string", Email = "string",
    AccountId = "reference", HasOptedOutOfEmail = "boolean",
  },
}

-- The simulated type of each package field type Heroku Connect maps; a field of
-- any other type (encrypted text, a compound location) is left out, so an
-- import naming it goes BAD_CONFIG.
_M.FIELD_TYPES = {
  Text = "string", Email = "string", Phone = "string", Url = "string", Picklist = "string",
  AutoNumber = "string", TextArea = "textarea", LongTextArea = "textarea", Html = "textarea",
  Checkbox = "boolean", Number = "double", Currency = "double", Percent = "double",
  Date = "date", DateTime = "datetime", Lookup = "reference", MasterDetail = "reference",
}

local function with_system_fields(fields)
  local out = {}
  for k, v in pairs(fields) do out[k] = v end
  for k, v in pairs(SYSTEM) do out[k] = v end
  return out
end

-- add(objects, name, fields, ns): the package object's fields (prefixed by ns)
-- on the object called name, made if missing (a custom object: with its Name)
local function add(objects, name, fields, ns)
  local target = objects[name] or with_system_fields({ Name = "string" })
  for f, spec in pairs(fields) do
    local t = _M.FIELD_TYPES[spec.type]
    if t then target[ns .. f] = t end
  end
  objects[name] = target
end

local function build()
  local objects = {}
  for name, fields in pairs(STANDARD) do objects[name] = with_system_fields(fields) end
  for name, o in pairs(force_app.objects()) do
    if not name:match("__mdt$") then -- custom metadata is not data: Connect cannot map it
      add(objects, name, o.fields, "")
      local ns = _M.NAMESPACE .. "__"
      add(objects, o.custom and ns .. name or name, o.fields, ns)
    end
  end
  return objects
end

_M.OBJECTS = build()

-- Postgres type of each Salesforce field type
_M.PG_TYPES = {
  id = "varchar(18)", reference = "varchar(18)", string = "varchar(255)", textarea = "text",
  boolean = "boolean", double = "double precision", datetime = "timestamp", date = "date",
}

-- The object's canonical name (the org's spelling) for any case of it, or nil.
function _M.object(name)
  if type(name) ~= "string" then return nil end
  for canonical in pairs(_M.OBJECTS) do
    if canonical:lower() == name:lower() then return canonical end
  end
end

-- The canonical field name, or nil.
function _M.field(object, name)
  for canonical in pairs(_M.OBJECTS[object] or {}) do
    if canonical:lower() == name:lower() then return canonical end
  end
end

local PREFIXES = { Account = "001", Contact = "003", Tweet__c = "a00", hcpoc__Tweet__c = "a01", Connection__c = "a02",
  hcpoc__Connection__c = "a03" }

local function sfid(object, n)
  return string.format("%s%012dAAA", PREFIXES[object] or "a09", n)
end

-- The object's records in org org_id (sandbox.orgs: a fixture or synthetic org;
-- the fixture's first org when org_id is neither), one per account of the org,
-- every field given (callers pick the fields their mapping has).
function _M.records(object, org_id)
  local out = {}
  local orgs = require "sandbox.orgs"
  local fixture = orgs.by_id(org_id) or orgs.all()[1]
  local handles, names = {}, {}
  for i, a in ipairs(fixture.accounts) do handles[i], names[i] = a.twitter_handle, a.name end
  for n = 1, math.min(#names, 3) do
    local stamp = string.format("2024-01-0%d 12:00:00", n)
    local r = { Id = sfid(object, n), SystemModstamp = stamp, CreatedDate = stamp, IsDeleted = false }
    local ns = _M.NAMESPACE .. "__"
    local base = object:sub(1, #ns) == ns and object:sub(#ns + 1) or object
    ns = base == object and "" or ns
    if object == "Account" then
      r.Name = names[n]
      r.Twitter_Handle__c, r.hcpoc__Twitter_Handle__c = handles[n], handles[n]
      r.Industry, r.AnnualRevenue, r.OwnerId = "Technology", n * 1000000.0, string.format("005%012dAAA", 1)
    elseif object == "Contact" then
      r.FirstName, r.LastName = ({ "Ada", "Grace", "Alan" })[n], ({ "Lovelace", "Hopper", "Turing" })[n]
      r.Name, r.Email = r.FirstName .. " " .. r.LastName, r.FirstName:lower() .. "@example.com"
      r.AccountId, r.HasOptedOutOfEmail = sfid("Account", n), n == 3
    elseif base == "Connection__c" then
      r.Name = string.format("C-%04d", n)
      r[ns .. "Connection_Id__c"] = string.format("00000000-0000-4000-8000-%012d", n)
      r[ns .. "Auth_URL__c"] = "https://connect.example/authorize/" .. n
    elseif base == "Tweet__c" then
      r.Name = "T-" .. n
      r[ns .. "Account__c"] = sfid("Account", n)
      r[ns .. "Text__c"] = "Hello from " .. handles[n]
      r[ns .. "Author_Username__c"] = handles[n]
      r[ns .. "Tweet_Id__c"] = tostring(1700000000000000000 + n)
      r[ns .. "Posted_At__c"] = stamp
    end
    out[n] = r
  end
  return out
end

return _M
