-- admin.tenants: the dashboard's tenants table, one tenant's page, and the
-- actions on it. The table is GET /organizations' listing; every action is one
-- of onboarding.operations (so orgs.transition moves the org and records
-- `{"by": "dashboard"}`), posted with the session's CSRF token, answered by a
-- redirect back to the tenant with a flash message.
local json = require "mc.json"
local log = require "mc.log"
local http = require "mc.http"
local db = require "lib.db"
local sfid = require "lib.sfid"
local operator = require "lib.operator"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local listing = require "onboarding.listing"
local operations = require "onboarding.operations"
local inspect = require "onboarding.inspect"
local session = require "admin.session"
local render = require "admin.render"

local _M = {}

local OFFBOARD_LOCK_MS = 3000 -- how long an offboard waits for a running step's row lock

-- The actions, in the order the page shows them: when each applies (the
-- operation decides; this only hides buttons that cannot work) and what it does.
_M.ACTIONS = {
  { name = "resume", label = "Resume", help = "run the failed step again",
    applies = function(s) return s == "failed" end,
    run = function(conn, id, by) return operations.resume(conn, id, by) end },
  { name = "retry_step", label = "Retry step", help = "run the current step now",
    applies = function(s) return not states.FINAL[s] and not states.PERSON[s] end,
    run = function(conn, id, by) return operations.retry_step(conn, id, by) end },
  { name = "reimport_mapping", label = "Re-import mapping", help = "import the tenant's mapping again",
    applies = function(s) return states.ONBOARDED[s] or s == "mappings_imported" end,
    run = function(conn, id, by) return operations.reimport_mapping(conn, id, by) end },
  { name = "resend_mail", label = "Resend admin email", help = "mail the org's admin the link they wait on again",
    applies = function(s) return states.PERSON[s] == true end,
    run = function(conn, id, by) return operations.resend_mail(conn, id, by) end },
  { name = "offboard", label = "Offboard",
    help = "delete the add-on; the schema is archived with its data for ARCHIVE_DAYS",
    confirm = "Yes, offboard this org", applies = function(s) return s ~= "offboarded" end,
    run = function(conn, id, by) return operations.offboard(conn, id, by, OFFBOARD_LOCK_MS, "operator") end },
}
local BY_NAME = {}
for _, a in ipairs(_M.ACTIONS) do BY_NAME[a.name] = a end

local function unavailable(what, err)
  log.error("admin: " .. what, { err = err })
  return render.message(503, "Unavailable",
    "The database cannot be reached right now (" .. what .. "). Try again shortly.")
end

-- The listing's parameters the tenants page passes on (the form's and the pager's).
local function query_of(req)
  local q = {}
  for _, k in ipairs({ "state", "q", "cursor" }) do q[k] = req.query[k] end
  return q
end

function _M.index(req, ctx)
  local params = query_of(req)
  local q, param, why = listing.parse(params)
  if not q then return render.message(400, "Bad filter", param .. ": " .. why) end
  local conn, cerr = db.conn()
  if not conn then return unavailable("listing the tenants", cerr) end
  local page, err, cwhy = listing.page(conn, q, operator.key("cursor"))
  if page == nil then return unavailable("listing the tenants", err) end
  if not page then return render.message(400, "Bad page link", err .. ": " .. cwhy) end
  local next_url = false
  if page.next_cursor ~= mc.null then
    next_url = "/admin/tenants?" .. http.encode_query({ state = params.state, q = params.q, cursor = page.next_cursor })
  end
  return render.page(200, "tenants.html", { title = "Tenants", nav = "tenants", csrf = ctx.csrf, flash = ctx.flash,
    items = page.items, states = states.ALL, state = params.state or "", q = params.q or "", next_url = next_url })
end

local function org_id(req)
  return sfid.to18(req.params.org_id or "")
end

-- Events newest first, their details as compact JSON.
local function history(conn, id)
  local rows, err = orgs.events(conn, id, 100)
  if not rows then return nil, err end
  local out = {}
  for i = #rows, 1, -1 do
    local e = rows[i]
    out[#out + 1] = { at = e.created_at, kind = e.kind, from = e.from_state, to = e.to_state,
      details = next(e.details) and json.encode(e.details) or "" }
  end
  return out
end

function _M.show(req, ctx)
  local id = org_id(req)
  if not id then return render.message(404, "No such tenant", "That is not an org id.") end
  local conn, cerr = db.conn()
  if not conn then return unavailable("reading the tenant", cerr) end
  local org, err = orgs.get(conn, id)
  if org == nil then return unavailable("reading the tenant", err) end
  if not org then return render.message(404, "No such tenant", "There is no tenant " .. id .. ".") end
  local events, eerr = history(conn, id)
  if not events then return unavailable("reading the history", eerr) end
  local tables, terr = inspect.tables(conn, org)
  local actions = {}
  for _, a in ipairs(_M.ACTIONS) do
    if a.applies(org.state) then actions[#actions + 1] = a end
  end
  return render.page(200, "tenant.html", { title = org.org_name, nav = "tenants", csrf = ctx.csrf, flash = ctx.flash,
    org = org, next_action = states.next_action(org.state), events = events, actions = actions,
    connection = inspect.connection(conn, org), tables = tables or false, tables_error = terr or false })
end

-- What the flash says after an operation answered row | false, why | nil, err.
local function outcome(action, row, why)
  if row then return action.label .. ": done, the org is now " .. row.state .. "." end
  if row == false then return action.label .. " refused: " .. tostring(why) .. "." end
  if why == "busy" then return action.label .. ": a step holds the org right now; try again in a moment." end
  log.error("admin action failed", { action = action.name, err = why })
  return action.label .. " failed: the database cannot be reached. Try again shortly."
end

function _M.act(req)
  local id = org_id(req)
  local action = BY_NAME[req.params.action]
  if not id or not action then return render.message(404, "No such action", "That tenant action does not exist.") end
  local back = "/admin/tenants/" .. id
  if action.confirm and req.form().confirm ~= "yes" then
    return render.redirect(back, session.flash(action.label .. ": tick the confirmation box first; nothing was done."))
  end
  local conn, cerr = db.conn()
  if not conn then return render.redirect(back, session.flash(outcome(action, nil, cerr))) end
  local row, why = action.run(conn, id, { by = "dashboard", ip = req.ip })
  log.info("admin action", { action = action.name, org_id = id, ip = req.ip, ok = row and true or false })
  return render.redirect(back, session.flash(outcome(action, row, why)))
end

return _M
