-- sandbox.connect_org: the simulated Salesforce org behind the Connect stand-in:
-- which objects and fields exist (an import naming others goes BAD_CONFIG), their
-- Postgres column types (docs/external-apis.md §1.10), and a few deterministic records per object.
local _M = {}

local SYSTEM = {
  Id = "id", SystemModstamp = "datetime", IsDeleted = "boolean", CreatedDate = "datetime",
}

local function object(fields)
  for k, v in pairs(SYSTEM) do fields[k] = v end
  return fields
end

_M.OBJECTS = {
  Account = object({
    Name = "string", Twitter_Handle__c = "string", hcpoc__Twitter__c = "string",
    Industry = "string", AnnualRevenue = "double", OwnerId = "reference",
  }),
  Contact = object({
    FirstName = "string", LastName = "string", Name = "string", Email = "string",
    AccountId = "reference", HasOptedOutOfEmail = "boolean",
  }),
  Tweet__c = object({
    Name = "string", Account__c = "reference", Text__c = "textarea", Author_Username__c = "string",
    Tweet_Id__c = "string", Posted_At__c = "datetime", Likes__c = "double", Retweets__c = "double",
  }),
  -- the package's own object (force-app): Connect's authorize URL (a long text area)
  -- and the connection it belongs to
  Connection__c = object({
    Name = "string", Auth_URL__c = "textarea", Connection_Id__c = "string",
  }),
  hcpoc__Tweet__c = object({
    Name = "string", hcpoc__Account__c = "reference", hcpoc__Text__c = "textarea",
    hcpoc__Author_Username__c = "string", hcpoc__Tweet_Id__c = "string", hcpoc__Posted_At__c = "datetime",
    hcpoc__Likes__c = "double", hcpoc__Retweets__c = "double",
  }),
}

-- Postgres type of each Salesforce field type
_M.PG_TYPES = {
  id = "varchar(18)", reference = "varchar(18)", string = "varchar(255)", textarea = "text",
  boolean = "boolean", double = "double precision", datetime = "timestamp",
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

local PREFIXES = { Account = "001", Contact = "003", Tweet__c = "a00", hcpoc__Tweet__c = "a01", Connection__c = "a02" }

local function sfid(object, n)
  return string.format("%s%012dAAA", PREFIXES[object], n)
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
    if object == "Account" then
      r.Name = names[n]
      r.Twitter_Handle__c, r.hcpoc__Twitter__c = handles[n], handles[n]
      r.Industry, r.AnnualRevenue, r.OwnerId = "Technology", n * 1000000.0, string.format("005%012dAAA", 1)
    elseif object == "Contact" then
      r.FirstName, r.LastName = ({ "Ada", "Grace", "Alan" })[n], ({ "Lovelace", "Hopper", "Turing" })[n]
      r.Name, r.Email = r.FirstName .. " " .. r.LastName, r.FirstName:lower() .. "@example.com"
      r.AccountId, r.HasOptedOutOfEmail = sfid("Account", n), n == 3
    elseif object == "Connection__c" then
      r.Name = string.format("C-%04d", n)
      r.Connection_Id__c = string.format("00000000-0000-4000-8000-%012d", n)
      r.Auth_URL__c = "https://connect.example/authorize/" .. n
    else
      local ns = object == "hcpoc__Tweet__c" and "hcpoc__" or ""
      r.Name = "T-" .. n
      r[ns .. "Account__c"] = sfid("Account", n)
      r[ns .. "Text__c"] = "Hello from " .. handles[n]
      r[ns .. "Author_Username__c"] = handles[n]
      r[ns .. "Tweet_Id__c"] = tostring(1700000000000000000 + n)
      if ns == "" then r.Posted_At__c = stamp end
    end
    out[n] = r
  end
  return out
end

return _M
