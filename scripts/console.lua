-- console: the operator helpers `multiconnect console` (mc.console) installs as
-- globals. Application code, so reload() picks up edits to it and to scripts/.
--
--   orgs([state])          the tenants: org_id, org_name, state, failed_step, updated_at
--   org(id)                one tenant (15- or 18-character id): its public fields
--                          (never tokens) and :events([limit]), :resume(),
--                          :retry_step(), :reimport_mapping(), :resend_mail(), :refresh(),
--                          :health() (the last health check), :offboard()
--   jobs                   mc.jobs: jobs.stats(), jobs.dead([limit]), jobs.retry_dead(), ...
--   sql(query, ...)        $1..$n parameters -> rows, affected | nil, err
--   reload()               drop the scripts/ modules and install these helpers anew
--
-- orgs, org and :events raise on a database error or an unknown org (an error is
-- the console's answer); the operations return the org anew or nil, err, as
-- onboarding.operations does, and record by = "console" in onboarding_events.
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local operations = require "onboarding.operations"
local record = require "watch.record"
local sfid = require "lib.sfid"
local jobs = require "mc.jobs"
local host = require "mc.host"

local _M = {}

local BY = { by = "console" }

local function conn()
  local c, err = db.conn()
  if not c then error(err, 3) end
  return c
end

-- rows without the `columns` and `affected` fields mc.pg adds, for display
local function plain(rows)
  return table.move(rows, 1, #rows, 1, {})
end

function _M.orgs(state)
  local sql = "SELECT org_id, org_name, state, failed_step, updated_at FROM organizations"
  local rows, err
  if state then
    rows, err = conn():query(sql .. " WHERE state = $1 ORDER BY id", state)
  else
    rows, err = conn():query(sql .. " ORDER BY id")
  end
  if not rows then error("orgs: " .. err, 2) end
  return plain(rows)
end

local Org = {}
Org.__index = Org

local function wrap(row)
  return setmetatable(orgs.public(row), Org)
end

function _M.org(id)
  local full, err = sfid.org_id(id)
  if not full then error(string.format("org(%q): the id %s", tostring(id), err), 2) end
  local row, gerr = orgs.get(conn(), full)
  if row == nil then error("org: " .. gerr, 2) end
  if not row then error("no such org " .. full, 2) end
  return wrap(row)
end

function Org:refresh()
  return _M.org(self.org_id)
end

function Org:events(limit)
  local rows, err = orgs.events(conn(), self.org_id, limit)
  if not rows then error("events: " .. err, 2) end
  return plain(rows)
end

local function operation(name)
  return function(self)
    local row, err = operations[name](conn(), self.org_id, BY)
    if not row then return nil, err end
    return wrap(row)
  end
end

-- health() -> what the last health check saw (sync_health) | false (never checked)
function Org:health()
  local row, err = record.get(conn(), self.org_id)
  if row == nil then error("health: " .. err, 2) end
  return row
end

-- offboard() -> the org, offboarded (as an uninstall does: the connection
-- paused, the add-on removed, the schema archived) | nil, err
function Org:offboard()
  local row, err = operations.offboard(conn(), self.org_id, BY, nil, "operator")
  if not row then return nil, err end
  return wrap(row)
end

Org.resume = operation("resume")
Org.retry_step = operation("retry_step")
Org.reimport_mapping = operation("reimport_mapping")
Org.resend_mail = operation("resend_mail")

_M.jobs = jobs

function _M.sql(query, ...)
  if type(query) ~= "string" then error("sql: the query must be a string", 2) end
  local rows, err = conn():query(query, ...)
  if not rows then return nil, err end
  return plain(rows), rows.affected
end

-- reload() -> the number of modules dropped | nil, err (the old helpers stay)
function _M.reload()
  local dir = host.root .. "/scripts/"
  local dropped = 0
  for name in pairs(package.loaded) do
    if type(name) == "string" and package.searchpath(name, dir .. "?.lua;" .. dir .. "?/init.lua") then
      package.loaded[name] = nil
      dropped = dropped + 1
    end
  end
  local ok, err = require("mc.console").install_helpers()
  if not ok then return nil, err end
  return dropped
end

return _M
