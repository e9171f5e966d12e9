-- sandbox.control: /__sandbox -- knobs and state for tests and operators.
--   POST /__sandbox/config  {"heroku": {"async": false, ...}} merges knobs
--   GET  /__sandbox/config  the knobs
--   GET  /__sandbox/state   every sandbox:* key and what it holds
--   POST /__sandbox/reset   forgets all state and knobs
--   GET  /__sandbox/salesforce/orgs/:org_id   a simulated org and its Connection__c
--   GET  /__sandbox/heroku/addons[?app=]      the live add-ons, compact (name, attachment, ...)
--   POST /__sandbox/connect/connections/:id/break  {"state": "NEED_AUTHENTICATION"|"PAUSED"|...},
--        {"mapping": "Account", "state": "SYSTEM_ERROR", "description": "..."} or {"stall": true}
--   POST /__sandbox/connect/connections/:id/heal   every break of that connection undone
local store = require "sandbox.store"
local json = require "mc.json"
local salesforce = require "sandbox.salesforce"
local heroku = require "sandbox.heroku"
local connect = require "sandbox.connect"

local _M = {}

local function state()
  local r = store.redis()
  local out, cursor = {}, "0"
  repeat
    local res = assert(r:call("SCAN", cursor, "MATCH", store.PREFIX .. "*", "COUNT", 500))
    cursor = res[1]
    for _, key in ipairs(res[2]) do
      local kind = r:call("TYPE", key)
      if kind == "string" then out[key] = json.decode(r:call("GET", key)) or r:call("GET", key)
      elseif kind == "hash" then out[key] = r:call("HGETALL", key)
      elseif kind == "set" then out[key] = r:call("SMEMBERS", key)
      elseif kind == "list" then out[key] = r:call("LRANGE", key, 0, -1)
      elseif kind == "zset" then out[key] = r:call("ZRANGE", key, 0, -1) end
    end
  until cursor == "0"
  return out
end

function _M.mount(app, prefix)
  app:get(prefix .. "/config", function() return 200, store.config() end)
  app:post(prefix .. "/config", function(req)
    local doc, err = req.json()
    if type(doc) ~= "table" then return 400, { error = "config must be a JSON object: " .. tostring(err) } end
    local c, merr = store.merge(doc)
    if not c then return 400, { error = merr } end
    return 200, c
  end)
  app:get(prefix .. "/state", function() return 200, state() end)
  app:get(prefix .. "/salesforce/orgs/:org_id", function(req)
    local org = salesforce.org_state(req.params.org_id)
    if not org then return 404, { error = "no such org: " .. req.params.org_id } end
    return 200, org
  end)
  app:get(prefix .. "/heroku/addons", function(req)
    local app_name = req.query.app
    return 200, json.array(heroku.addons(type(app_name) == "string" and app_name or nil))
  end)
  app:post(prefix .. "/connect/connections/:id/break", function(req)
    local doc = req.json()
    if type(doc) ~= "table" then return 400, { error = "a JSON object, please" } end
    local conn, status, err = connect.breaks(req.params.id, doc)
    if not conn then return status, { error = err } end
    return 204
  end)
  app:post(prefix .. "/connect/connections/:id/heal", function(req)
    local conn, status, err = connect.heals(req.params.id)
    if not conn then return status, { error = err } end
    return 204
  end)
  app:post(prefix .. "/reset", function()
    store.reset()
    return 204
  end)
end

return _M
