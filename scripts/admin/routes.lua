-- admin.routes: the dashboard under /admin (scripts/app.lua mounts it). Every
-- page but the sign-in form and the static files needs a session; every POST
-- also needs the session's CSRF token. Without ADMIN_TOKEN every page says how
-- to turn the dashboard on, and nothing else is served.
local config = require "config"
local log = require "mc.log"
local file = require "mc.file"
local host = require "mc.host"
local session = require "admin.session"
local render = require "admin.render"
local signin = require "admin.signin"
local overview = require "admin.overview"
local tenants = require "admin.tenants"
local jobs_page = require "admin.jobs"

local _M = {}

local function off()
  return render.page(503, "off.html", { title = "The dashboard is off" })
end

-- enabled(handler) -> handler answering the "off" page while ADMIN_TOKEN is unset
local function enabled(handler)
  return function(req)
    if not config.get("ADMIN_TOKEN") then return off() end
    return handler(req)
  end
end

local function refused(req, why)
  log.warn("admin request refused", { path = req.path, ip = req.ip, reason = why })
  return render.message(403, "Refused", "This form did not come from your dashboard session (its CSRF token is "
    .. "missing or wrong), so nothing was done. Go back, reload the page and try again.")
end

-- signed_in(handler[, api]) -> handler(req, ctx) behind a session (and, for a
-- POST, its CSRF token); ctx: csrf, flash. api: answer 401 JSON, not a redirect.
local function signed_in(handler, api)
  return enabled(function(req)
    local s = session.current(req)
    if not s then
      if api then return 401, { error = "signed out" } end
      if req.method == "POST" then
        return render.message(403, "Signed out", "Your session has ended: sign in again.")
      end
      return render.redirect("/admin/signin")
    end
    if req.method == "POST" and not session.csrf_ok(s, req.form().csrf) then return refused(req, "csrf") end
    local flash, clear = session.take_flash(req)
    local status, body, headers = handler(req, { csrf = session.csrf(s), flash = flash or false })
    if clear then
      headers = headers or {}
      headers["Set-Cookie"] = headers["Set-Cookie"] or clear
    end
    return status, body, headers
  end)
end

local STATIC = { ["admin.css"] = "text/css; charset=utf-8", ["admin.js"] = "text/javascript; charset=utf-8" }

local function static(req)
  local name = req.params.name
  if not STATIC[name] then return 404, "not found" end
  local body = assert(file.read(host.root .. "/scripts/admin/static/" .. name))
  return 200, body, { ["Content-Type"] = STATIC[name], ["Cache-Control"] = "no-cache",
    ["X-Content-Type-Options"] = "nosniff" }
end

-- mount(app): the dashboard's routes on the web process's router
function _M.mount(app)
  app:get("/admin/static/:name", static)
  app:get("/admin/signin", enabled(signin.show))
  app:post("/admin/signin", enabled(signin.submit))
  app:post("/admin/signout", signed_in(signin.signout))
  app:get("/admin", signed_in(overview.show))
  app:get("/admin/overview.json", signed_in(overview.json, true))
  app:get("/admin/tenants", signed_in(tenants.index))
  app:get("/admin/tenants/:org_id", signed_in(tenants.show))
  app:post("/admin/tenants/:org_id/:action", signed_in(tenants.act))
  app:get("/admin/jobs", signed_in(jobs_page.show))
  app:post("/admin/jobs/:set/:action", signed_in(jobs_page.act))
  return app
end

return _M
