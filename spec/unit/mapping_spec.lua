-- onboarding.mapping: the default mapping, its validation rules, prepare, and the
-- per-org override file.
local mapping = require "onboarding.mapping"
local json = require "mc.json"
local host = require "mc.host"
local proc = require "support.process"

local ORG = "00D5e000000AbCdEAK"

local function valid_doc()
  return {
    version = 1,
    mappings = {
      { object_name = "Account", config = {
        access = "read_write", sf_polling_seconds = 600, sf_notify_enabled = false,
        sf_max_daily_api_calls = 30000,
        fields = { Id = {}, SystemModstamp = {}, IsDeleted = {}, Name = {}, Ext_Id__c = {} },
        indexes = { Id = { unique = true }, Ext_Id__c = { unique = true } },
        upsert_field = "Ext_Id__c",
      } },
      { object_name = "hcpoc__Tweet__c", config = {
        access = "read_only", sf_polling_seconds = 120,
        fields = { Id = {}, SystemModstamp = {}, IsDeleted = {}, hcpoc__Text__c = {} },
      } },
    },
  }
end

-- the problems validate reports for doc after change(doc) has spoilt it
local function problems(change)
  local doc = valid_doc()
  change(doc)
  local ok, err, list = mapping.validate(doc)
  assert.is_nil(ok, "expected the document to be refused")
  assert.matches("^invalid mapping: ", err)
  return list, err
end

local function refuses(expected, change)
  local list, err = problems(change)
  for _, p in ipairs(list) do
    if p == expected then return end
  end
  error("no problem " .. string.format("%q", expected) .. " in: " .. err, 2)
end

describe("onboarding.mapping", function()
  describe("mappings/default.json", function()
    local doc = assert(mapping.base(ORG))

    it("is valid", function()
      assert.is_true(mapping.validate(doc))
    end)

    it("maps the original app's objects, with no other org's connection block", function()
      local names = {}
      for _, m in ipairs(doc.mappings) do names[#names + 1] = m.object_name end
      table.sort(names)
      assert.same({ "Account", "Connection__c", "Contact", "Tweet__c" }, names)
      assert.is_nil(doc.connection)
    end)

    it("names only objects and fields the sandbox's simulated org knows (else BAD_CONFIG)", function()
      package.path = host.root .. "/?.lua;" .. package.path
      local org = require "sandbox.connect_org"
      for _, m in ipairs(doc.mappings) do
        local object = org.object(m.object_name)
        assert.equal(m.object_name, object)
        for field in pairs(m.config.fields) do
          assert.equal(field, org.field(object, field), m.object_name .. "." .. field)
        end
      end
    end)

    it("upserts tweets by their tweet id, which has a unique index", function()
      local tweets
      for _, m in ipairs(doc.mappings) do
        if m.object_name == "Tweet__c" then tweets = m.config end
      end
      assert.equal("Tweet_Id__c", tweets.upsert_field)
      assert.same({ unique = true }, tweets.indexes.Tweet_Id__c)
      assert.is_table(tweets.fields.Account__c)
    end)
  end)

  describe("validate", function()
    it("accepts a valid document, including a raw export with its metadata", function()
      assert.is_true(mapping.validate(valid_doc()))
      local doc = valid_doc()
      doc.connection = { organization_id = "00DB00000002NDmMAM", app_name = "x" }
      doc.mappings[1].config.applied_at = "2016-03-10T07:03:53.239Z"
      doc.mappings[1].config.revision = 1089201
      assert.is_true(mapping.validate(doc))
    end)

    it("refuses what is not a version 1 document", function()
      for _, v in ipairs({ "x", 1, json.null, { 1, 2 } }) do
        local ok, err = mapping.validate(v)
        assert.is_nil(ok)
        assert.matches("(document): must be an object", err, 1, true)
      end
      refuses("version: must be 1", function(d) d.version = 2 end)
      refuses("version: is required", function(d) d.version = nil end)
      refuses("extra: unknown key", function(d) d.extra = true end)
      refuses("connection: must be an object, got string", function(d) d.connection = "x" end)
    end)

    it("wants a non-empty mappings array of at most 200", function()
      refuses("mappings: is required", function(d) d.mappings = nil end)
      refuses("mappings: must not be empty", function(d) d.mappings = {} end)
      refuses("mappings: must be an array, got object", function(d) d.mappings = { a = 1 } end)
      refuses("mappings: more than 200 objects", function(d)
        for i = 3, 201 do
          local m = valid_doc().mappings[2]
          m.object_name = "Object" .. i .. "__c"
          d.mappings[i] = m
        end
      end)
      refuses("mappings[2]: must be an object, got null", function(d) d.mappings[2] = json.null end)
      refuses("mappings[1].label: unknown key", function(d) d.mappings[1].label = "x" end)
    end)

    it("checks object names as Salesforce API names", function()
      for _, good in ipairs({ "Account", "Tweet__c", "hcpoc__Tweet__c", "My_Object__c", "Setting__mdt",
                              "Event__e", "Ext__x", "Big__b", "FAQ__kav", "Acct__r", "Tweet__C" }) do
        assert.is_true(mapping.valid_api_name(good), good)
      end
      for _, bad in ipairs({ "", "1Account", "_Account", "Account_", "Tweet__", "My__Thing", "a__b__c__d",
                             "Tweet___c", "ns___Tweet__c", "Twe et__c", "Tweet-1__c", "Tw\195\169et__c",
                             string.rep("a", 41) .. "__c", string.rep("n", 16) .. "__Tweet__c" }) do
        assert.is_false(mapping.valid_api_name(bad), bad)
      end
      refuses('mappings[1].object_name: "Account_" is not a valid Salesforce API name',
        function(d) d.mappings[1].object_name = "Account_" end)
      refuses("mappings[1].object_name: is required", function(d) d.mappings[1].object_name = nil end)
      refuses("mappings[1].object_name: must be a string, got number",
        function(d) d.mappings[1].object_name = 7 end)
    end)

    it("refuses an object mapped twice, whatever the case", function()
      refuses("mappings[2].object_name: account is mapped twice (also mappings[1])", function(d)
        d.mappings[2].object_name = "account"
      end)
    end)

    it("checks access, polling, notify and the API call budget", function()
      refuses("mappings[1].config.access: must be read_only or read_write",
        function(d) d.mappings[1].config.access = "write" end)
      refuses("mappings[1].config.access: is required", function(d) d.mappings[1].config.access = nil end)
      refuses("mappings[2].config.sf_polling_seconds: must be within 60..86400",
        function(d) d.mappings[2].config.sf_polling_seconds = 59 end)
      refuses("mappings[2].config.sf_polling_seconds: must be within 60..86400",
        function(d) d.mappings[2].config.sf_polling_seconds = 86401 end)
      refuses("mappings[2].config.sf_polling_seconds: must be an integer, got a fraction",
        function(d) d.mappings[2].config.sf_polling_seconds = 600.5 end)
      refuses("mappings[2].config.sf_polling_seconds: must be an integer, got string",
        function(d) d.mappings[2].config.sf_polling_seconds = "600" end)
      refuses("mappings[2].config.sf_polling_seconds: is required",
        function(d) d.mappings[2].config.sf_polling_seconds = nil end)
      refuses("mappings[1].config.sf_notify_enabled: must be a boolean, got null",
        function(d) d.mappings[1].config.sf_notify_enabled = json.null end)
      refuses("mappings[1].config.sf_max_daily_api_calls: must be within 1..1000000000",
        function(d) d.mappings[1].config.sf_max_daily_api_calls = 0 end)
      -- found by fuzz/targets/mapping.lua: validated, then encode raised on it
      refuses("mappings[1].config.sf_max_daily_api_calls: must be within 1..1000000000",
        function(d) d.mappings[1].config.sf_max_daily_api_calls = 300016666666666 end)
      refuses("mappings[1].config.sf_polling: unknown key",
        function(d) d.mappings[1].config.sf_polling = 600 end)
      refuses("mappings[1].config: must be an object, got string",
        function(d) d.mappings[1].config = "read_only" end)
    end)

    it("wants fields with valid names and object values, including Id, SystemModstamp and IsDeleted", function()
      refuses("mappings[1].config.fields: is required", function(d) d.mappings[1].config.fields = nil end)
      refuses("mappings[1].config.fields.Bad__: not a valid Salesforce field API name",
        function(d) d.mappings[1].config.fields.Bad__ = {} end)
      refuses("mappings[1].config.fields.Name: must be an object, got boolean",
        function(d) d.mappings[1].config.fields.Name = true end)
      refuses("mappings[1].config.fields.Name: must be an object, got null",
        function(d) d.mappings[1].config.fields.Name = json.null end)
      for _, required in ipairs({ "Id", "SystemModstamp", "IsDeleted" }) do
        refuses("mappings[2].config.fields: must include " .. required .. " (Heroku Connect requires it)",
          function(d) d.mappings[2].config.fields[required] = nil end)
      end
      refuses("mappings[1].config.fields.name: mapped twice (also as Name)",
        function(d) d.mappings[1].config.fields.name = {} end)
    end)

    it("lets objects without IsDeleted (User, RecordType) go without it", function()
      for _, object in ipairs({ "User", "RecordType" }) do
        local doc = valid_doc()
        doc.mappings[2].object_name = object
        doc.mappings[2].config.fields = { Id = {}, SystemModstamp = {}, Name = {} }
        assert.is_true(mapping.validate(doc))
      end
    end)

    it("wants indexes on mapped fields and an upsert field that is mapped and indexed", function()
      refuses("mappings[1].config.indexes.Email: not a mapped field",
        function(d) d.mappings[1].config.indexes.Email = { unique = false } end)
      refuses("mappings[1].config.indexes.Id.unique: must be a boolean, got string",
        function(d) d.mappings[1].config.indexes.Id.unique = "yes" end)
      refuses("mappings[1].config.indexes.Id.sparse: unknown key",
        function(d) d.mappings[1].config.indexes.Id.sparse = true end)
      refuses("mappings[1].config.upsert_field: Other__c is not a mapped field",
        function(d) d.mappings[1].config.upsert_field = "Other__c" end)
      refuses("mappings[1].config.upsert_field: Name needs an index (an unindexed external id breaks writes)",
        function(d) d.mappings[1].config.upsert_field = "Name" end)
      refuses("mappings[1].config.upsert_field: must be a string, got null",
        function(d) d.mappings[1].config.upsert_field = json.null end)
    end)

    it("reports every problem, with its path, up to 20", function()
      local list, err = problems(function(d)
        d.version = 3
        d.mappings[1].config.access = "x"
        d.mappings[2].config.sf_polling_seconds = 1
      end)
      assert.equal(3, #list)
      assert.matches("version: must be 1; mappings[1].config.access: must be read_only or read_write; "
        .. "mappings[2].config.sf_polling_seconds: must be within 60..86400", err, 1, true)
      list, err = problems(function(d)
        for i = 1, 30 do d.mappings[1].config["bogus" .. string.format("%02d", i)] = 1 end
      end)
      assert.equal(20, #list)
      assert.matches("; and 10 more$", err)
    end)

    it("refuses the JSON shapes of a document decoded from text", function()
      local doc = assert(json.decode('{"version":1,"mappings":[{"object_name":"Account","config":'
        .. '{"access":null,"sf_polling_seconds":600,"fields":[]}}]}'))
      local ok, _, list = mapping.validate(doc)
      assert.is_nil(ok)
      assert.same({
        "mappings[1].config.access: must be read_only or read_write",
        "mappings[1].config.fields: must include Id (Heroku Connect requires it)",
        "mappings[1].config.fields: must include SystemModstamp (Heroku Connect requires it)",
        "mappings[1].config.fields: must include IsDeleted (Heroku Connect requires it)",
      }, list)
    end)
  end)

  describe("prepare", function()
    local export = valid_doc()
    export.connection = { organization_id = "00DB00000002NDmMAM", app_name = "hcpoc-staging" }
    export.mappings[1].config.applied_at = "2016-03-10T07:03:53.239Z"
    export.mappings[1].config.revision = 12
    export.mappings[1], export.mappings[2] = export.mappings[2], export.mappings[1]

    it("strips the export-only metadata, sorts the mappings, leaves its argument alone", function()
      local before = mapping.encode(export)
      local doc = mapping.prepare(export)
      assert.equal(before, mapping.encode(export))
      assert.is_nil(doc.connection)
      assert.equal(1, doc.version)
      assert.same({ "Account", "hcpoc__Tweet__c" }, { doc.mappings[1].object_name, doc.mappings[2].object_name })
      assert.is_nil(doc.mappings[1].config.applied_at)
      assert.is_nil(doc.mappings[1].config.revision)
      assert.equal("Ext_Id__c", doc.mappings[1].config.upsert_field)
      assert.is_true(mapping.validate(doc))
    end)

    it("encodes what JSON cannot hold as nil, err, not a raise", function()
      local text, err = mapping.encode({ mappings = { { config = { revision = 123456789012345 } } } })
      assert.is_nil(text)
      assert.matches("more than 14 digits", err, 1, true)
    end)

    it("is idempotent, and encodes the same bytes every time", function()
      local once = mapping.prepare(export)
      local twice = mapping.prepare(once)
      assert.same(once, twice)
      assert.equal(mapping.encode(once), mapping.encode(twice))
      local text = mapping.encode(once)
      assert.matches('^{"mappings":%[{"config":{"access":"read_write","fields":{"Ext_Id__c":{},"Id":{}', text)
      assert.matches('"version":1}$', text)
      assert.same(once, json.decode(text))
    end)
  end)

  describe("base", function()
    local dir, cleanup
    before_each(function()
      dir, cleanup = proc.tmpdir()
      proc.write(dir .. "/default.json", '{"version":1,"mappings":[],"which":"default"}')
    end)
    after_each(function() cleanup() end)

    it("takes the org's own file when there is one, else the default", function()
      proc.write(dir .. "/" .. ORG .. ".json", '{"version":1,"mappings":[],"which":"org"}')
      assert.equal("org", assert(mapping.base(ORG, dir)).which)
      assert.equal("default", assert(mapping.base("00D000000000001AAA", dir)).which)
    end)

    it("takes a file named with the 15-character org id, and refuses both names at once", function()
      proc.write(dir .. "/" .. ORG:sub(1, 15) .. ".json", '{"version":1,"mappings":[],"which":"org15"}')
      assert.equal("org15", assert(mapping.base(ORG, dir)).which)
      proc.write(dir .. "/" .. ORG .. ".json", '{"version":1,"mappings":[],"which":"org"}')
      local doc, err = mapping.base(ORG, dir)
      assert.is_nil(doc)
      assert.equal("both mappings/" .. ORG .. ".json and mappings/" .. ORG:sub(1, 15) .. ".json exist: keep one", err)
    end)

    it("answers nil, err for a bad org id or malformed JSON, naming the file", function()
      local doc, err = mapping.base("../../etc/passwd", dir)
      assert.is_nil(doc)
      assert.matches("not a Salesforce org id", err, 1, true)
      proc.write(dir .. "/" .. ORG .. ".json", '{"version":1,')
      doc, err = mapping.base(ORG, dir)
      assert.is_nil(doc)
      assert.matches("^mappings/" .. ORG .. "%.json: ", err)
      os.remove(dir .. "/default.json")
      doc, err = mapping.base("00D000000000001AAA", dir)
      assert.is_nil(doc)
      assert.matches("mappings/default.json: not found", err, 1, true)
    end)
  end)
end)
