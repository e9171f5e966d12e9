-- luacheck (Debian's lua-check) for `make lint`: Lua 5.4, the host's global `mc`,
-- busted's globals in spec/, the tenant hooks' global `default`.
std = "lua54"
max_line_length = 120
globals = {}
-- A method may leave self unused: it fills an interface (a provider's source(), a
-- stub's wait_for()) whose callers use `:`.
self = false
read_globals = { "mc" }
exclude_files = { "var/**", "build/**", "node_modules/**", "**/node_modules/**" }

files["spec/**"] = { std = "+busted" }
files["scripts/tenants/**"] = { read_globals = { "default" } }
files["tools/templates/**"] = { read_globals = { "default" } }
