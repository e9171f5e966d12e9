-- sandbox.orgs: the simulated Salesforce orgs (sandbox/fixtures/orgs.json): their
-- ids, users and accounts with social handles. The Salesforce stand-in logs a user
-- into their org (login_hint or the login form's username picks the user), and the
-- Connect stand-in seeds a connection's tables from its org. Read-only data, read
-- once per Lua state.
local host = require "mc.host"
local json = require "mc.json"

local _M = {}

local fixture
local function load()
  if fixture then return fixture end
  local path = host.root .. "/sandbox/fixtures/orgs.json"
  local f = assert(io.open(path), "sandbox: no " .. path)
  local doc = assert(json.decode(f:read("a")), "sandbox: " .. path .. " is not JSON")
  f:close()
  fixture = doc.orgs
  return fixture
end

function _M.all() return load() end

-- by_id(org_id) -> org | nil (15- or 18-character id)
function _M.by_id(org_id)
  if type(org_id) ~= "string" then return nil end
  for _, o in ipairs(load()) do
    if o.org_id == org_id or o.org_id:sub(1, 15) == org_id then return o end
  end
end

-- by_username(name) -> org, user | nil
function _M.by_username(name)
  if type(name) ~= "string" then return nil end
  for _, o in ipairs(load()) do
    for _, u in ipairs(o.users) do
      if u.username:lower() == name:lower() then return o, u end
    end
  end
end

-- by_user_id(user_id) -> org, user | nil
function _M.by_user_id(user_id)
  for _, o in ipairs(load()) do
    for _, u in ipairs(o.users) do
      if u.user_id == user_id then return o, u end
    end
  end
end

return _M
