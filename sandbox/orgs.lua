-- sandbox.orgs: the simulated Salesforce orgs: their ids, environment, users and
-- accounts with social handles. Two kinds:
--   fixture orgs    sandbox/fixtures/orgs.json, read once per Lua state
--   synthetic orgs  orgs.synthetic(i), i = 1..MAX_SYNTHETIC, computed from i alone (no
--                   storage), so a test can onboard as many orgs as it likes: "Org <i>",
--                   admin@org<i>.example, ids 00D5e00000S<iiii> / 0055e00000S<iiii>
-- The Salesforce stand-in logs a user into their org (login_hint, the login form's
-- username or the admin's X-Sandbox-Login), and the Connect stand-in seeds a
-- connection's tables from its org. Every org has an `environment`: "production"
-- (log in at login.salesforce.com) unless the fixture says "sandbox" (test.salesforce.com).
local host = require "mc.host"
local json = require "mc.json"
local synth = require "sandbox.synth"

local _M = {}

_M.MAX_SYNTHETIC = 9999

local SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
local ORG_PREFIX, USER_PREFIX = "00D5e00000S", "0055e00000S" -- + 4 digits = 15 characters
local WORDS = { "labs", "retail", "foods", "media", "bank", "air", "motors", "health" }

-- id18(id) -> the 15-character id with its 3-character case-safe suffix (other
-- lengths unchanged). Each suffix character encodes which of 5 characters are upper case.
function _M.id18(id)
  if #id ~= 15 then return id end
  local out = {}
  for chunk = 0, 2 do
    local bits = 0
    for i = 0, 4 do
      local c = id:sub(chunk * 5 + i + 1, chunk * 5 + i + 1)
      if c:match("%u") then bits = bits | (1 << i) end
    end
    out[#out + 1] = SUFFIX:sub(bits + 1, bits + 1)
  end
  return id .. table.concat(out)
end

local fixture
local function load()
  if fixture then return fixture end
  local path = host.root .. "/sandbox/fixtures/orgs.json"
  local f = assert(io.open(path), "sandbox: no " .. path)
  local doc = assert(json.decode(f:read("a")), "sandbox: " .. path .. " is not JSON")
  f:close()
  for _, o in ipairs(doc.orgs) do o.environment = o.environment or "production" end
  fixture = doc.orgs
  return fixture
end

-- The fixture orgs (not the synthetic ones: there are as many of those as asked for).
function _M.all() return load() end

-- synthetic(i) -> the generated org number i (1..MAX_SYNTHETIC), nil outside that range
function _M.synthetic(i)
  i = math.tointeger(i)
  if not i or i < 1 or i > _M.MAX_SYNTHETIC then return nil end
  local accounts = { { name = "Org " .. i, twitter_handle = "org" .. i } }
  local start = synth.hash("org" .. i) % #WORDS
  for k = 2, 2 + synth.hash("accounts" .. i) % 2 do -- 2 or 3 accounts
    local word = WORDS[(start + k - 2) % #WORDS + 1]
    accounts[k] = { name = "Org " .. i .. " " .. word:gsub("^%l", string.upper), twitter_handle = "org" .. i .. word }
  end
  return {
    org_id = _M.id18(string.format("%s%04d", ORG_PREFIX, i)), name = "Org " .. i, environment = "production",
    users = { { user_id = _M.id18(string.format("%s%04d", USER_PREFIX, i)),
                username = "admin@org" .. i .. ".example" } },
    accounts = accounts,
  }
end

-- A synthetic id's number, if id (15 or 18 characters, the suffix checked) is one.
local function synthetic_number(id, prefix)
  if type(id) ~= "string" or (#id ~= 15 and #id ~= 18) then return nil end
  local digits = id:sub(1, 15):match("^" .. prefix .. "(%d%d%d%d)$")
  if not digits or (#id == 18 and _M.id18(id:sub(1, 15)) ~= id) then return nil end
  local i = tonumber(digits)
  return i >= 1 and i or nil
end

-- by_id(org_id) -> org | nil (15- or 18-character id)
function _M.by_id(org_id)
  if type(org_id) ~= "string" then return nil end
  local i = synthetic_number(org_id, ORG_PREFIX)
  if i then return _M.synthetic(i) end
  for _, o in ipairs(load()) do
    if o.org_id == org_id or o.org_id:sub(1, 15) == org_id then return o end
  end
end

-- by_username(name) -> org, user | nil (case-insensitive)
function _M.by_username(name)
  if type(name) ~= "string" then return nil end
  local lower = name:lower()
  local digits = lower:match("^admin@org([1-9]%d*)%.example$")
  if digits then
    local o = _M.synthetic(tonumber(digits))
    if o then return o, o.users[1] end
    return nil
  end
  for _, o in ipairs(load()) do
    for _, u in ipairs(o.users) do
      if u.username:lower() == lower then return o, u end
    end
  end
end

-- by_user_id(user_id) -> org, user | nil
function _M.by_user_id(user_id)
  local i = synthetic_number(user_id, USER_PREFIX)
  if i then
    local o = _M.synthetic(i)
    return o, o.users[1]
  end
  for _, o in ipairs(load()) do
    for _, u in ipairs(o.users) do
      if u.user_id == user_id then return o, u end
    end
  end
end

return _M
