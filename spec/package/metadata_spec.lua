-- The package's metadata agrees with itself where no checker looks: the callout's
-- Remote Site Setting names the host the settings record calls; the secret sits
-- in protected custom metadata; every class builds against the project's API
-- version; every class outside the tests is exercised by one (Salesforce's 75%
-- coverage rule); the handlers are the interfaces Salesforce calls.
local host = require "mc.host"
local json = require "mc.json"
local file = require "mc.file"
local url = require "mc.url"
local lfs = require "lfs"

local DEFAULT = host.root .. "/force-app/main/default/"

local function read(path) return assert(file.read(DEFAULT .. path)) end

local function classes()
  local out = {}
  for name in lfs.dir(DEFAULT .. "classes") do
    local class = name:match("^(.+)%.cls$")
    if class then out[class] = read("classes/" .. name) end
  end
  return out
end

-- A test class is marked at column 0; its methods' marks are indented.
local function is_test(src) return src:match("^@IsTest%s") ~= nil or src:match("\n@IsTest%s") ~= nil end

describe("the package's metadata", function()
  local project = json.decode(assert(file.read(host.root .. "/sfdx-project.json")))

  it("is one package directory, force-app, with a namespace left for the ISV to fill", function()
    assert.same({ { path = "force-app", default = true } }, project.packageDirectories)
    assert.equal("string", type(project.namespace)) -- "" until the ISV registers theirs (then FORCE_NAMESPACE)
    assert.matches("^%d+%.0$", project.sourceApiVersion)
  end)

  it("calls out only to the host its Remote Site Setting allows", function()
    local record = read("customMetadata/Multiconnect_Setting.Default.md-meta.xml")
    local app_url = record:match("<field>App_URL__c</field>%s*<value[^>]*>([^<]+)</value>")
    local site = read("remoteSiteSettings/Multiconnect_App.remoteSite-meta.xml"):match("<url>([^<]+)</url>")
    local a, s = assert(url.parse(app_url)), assert(url.parse(site))
    assert.equal("https", a.scheme)
    assert.same({ s.scheme, s.host }, { a.scheme, a.host })
  end)

  it("keeps the callback secret in protected custom metadata", function()
    assert.matches("<visibility>Protected</visibility>",
      read("objects/Multiconnect_Setting__mdt/Multiconnect_Setting__mdt.object-meta.xml"), 1, true)
    assert.matches("<protected>true</protected>",
      read("customMetadata/Multiconnect_Setting.Default.md-meta.xml"), 1, true)
  end)

  it("builds every class against the project's API version", function()
    for class in pairs(classes()) do
      local meta = read("classes/" .. class .. ".cls-meta.xml")
      assert.equal(project.sourceApiVersion, meta:match("<apiVersion>([^<]+)</apiVersion>"), class)
      assert.matches("<status>Active</status>", meta, 1, true)
    end
  end)

  it("exercises every class outside the tests from a test class", function()
    local all, tests, n = classes(), {}, 0
    for _, src in pairs(all) do
      if is_test(src) then tests[#tests + 1] = src end
    end
    for class, src in pairs(all) do
      if not is_test(src) then
        n = n + 1
        local used = false
        for _, t in ipairs(tests) do used = used or t:find("%f[%w]" .. class .. "%f[^%w]") ~= nil end
        assert.is_true(used, class .. " is used by no test class")
      end
    end
    assert.is_true(n >= 8 and #tests >= 6, n .. " classes, " .. #tests .. " tests")
  end)

  it("has the handlers Salesforce calls, and the REST resource where the app posts", function()
    local all = classes()
    assert.matches("implements InstallHandler", all.PostInstallHandler, 1, true)
    assert.matches("implements UninstallHandler", all.PostUninstallHandler, 1, true)
    assert.matches("implements Queueable, Database.AllowsCallouts", all.CallbackJob, 1, true)
    -- scripts/clients/salesforce.lua posts {connectionId, authorizeUrl} to [ns/]AuthConnection
    assert.matches("@RestResource(urlMapping='/AuthConnection/*')", all.AuthConnection, 1, true)
    assert.matches("doPost(String connectionId, String authorizeUrl)", all.AuthConnection, 1, true)
    local steps = assert(file.read(host.root .. "/scripts/onboarding/steps.lua"))
    assert.matches('salesforce.apex(org, "AuthConnection",', steps, 1, true)
    assert.matches("{ connectionId = org.connection_id, authorizeUrl = org.authorize_url }", steps, 1, true)
  end)
end)
