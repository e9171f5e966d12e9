-- The web process's routes. Handlers live beside their subject (scripts/*.lua);
-- this file only wires paths to them.
local web = require "mc.web"
local health = require "health"
local organizations = require "organizations"
local oauth = require "oauth"
local admin = require "admin.routes"

local app = web.router()

app:get("/health", health.show)

app:post("/organizations", organizations.create)
app:get("/organizations", organizations.index)
app:get("/organizations/:org_id", organizations.show)
app:post("/organizations/:org_id/resume", organizations.resume)
app:delete("/organizations/:org_id", organizations.destroy)
app:post("/organizations/:org_id/offboard", organizations.offboard)

app:get("/authenticate", oauth.authenticate)
app:get("/auth/salesforce/callback", oauth.callback)
app:get("/connection_auth_complete/:token", oauth.connect_complete)

admin.mount(app) -- the operations dashboard, under /admin

return app
