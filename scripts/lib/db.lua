-- lib.db: this Lua state's Postgres connection (DATABASE_URL), made on first use.
-- mc.pg reconnects by itself after a dropped connection; a reload makes a new one.
local pg = require "mc.pg"

local _M = {}

local conn

function _M.conn()
  if conn then return conn end
  local c, err = pg.connect()
  if not c then return nil, "postgres: " .. err end
  conn = c
  return conn
end

-- use(c): make c this state's connection (tests).
function _M.use(c) conn = c end

return _M
