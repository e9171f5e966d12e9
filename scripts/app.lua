-- The web process's routes. Handlers live beside their subject (scripts/*.lua);
-- this file only wires paths to them.
local web = require "mc.web"
local health = require "health"

local app = web.router()

app:get("/health", health.show)

return app
