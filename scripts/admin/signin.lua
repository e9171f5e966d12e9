-- admin.signin: signing in to the dashboard with the operator secret
-- (ADMIN_TOKEN), and out. The secret is compared in constant time (both sides
-- hashed first, so their lengths leak nothing either); every attempt counts
-- against a per-address and a global limit in Redis, so the secret cannot be
-- guessed at speed. A success sets the session cookie (admin.session).
local config = require "config"
local crypto = require "mc.crypto"
local log = require "mc.log"
local db = require "lib.db"
local session = require "admin.session"
local render = require "admin.render"

local _M = {}

_M.WINDOW = 300 -- seconds each attempt counts for
_M.GLOBAL_FACTOR = 10 -- the global limit, in per-address limits

-- Counts one attempt in a window that starts with the first one.
local COUNT = [[
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
]]

-- over_limit(ip) -> seconds to wait when this attempt is one too many | nil |
-- nil, err (Redis down: then nobody signs in, rather than anybody guessing freely)
local function over_limit(ip)
  local r, err = db.redis()
  if not r then return nil, err end
  local limit = config.get("ADMIN_SIGNIN_LIMIT")
  for _, c in ipairs({ { "mc:admin:signin:ip:" .. ip, limit }, { "mc:admin:signin:all", limit * _M.GLOBAL_FACTOR } }) do
    local res, eerr = r:eval(COUNT, { c[1] }, { _M.WINDOW })
    if not res then return nil, eerr end
    if res[1] > c[2] then return math.max(res[2], 1) end
  end
  return nil
end

local function form(status, problem, headers)
  return render.page(status, "signin.html", { title = "Sign in", problem = problem or false }, headers)
end

function _M.show(req)
  if session.current(req) then return render.redirect("/admin") end
  return form(200)
end

function _M.submit(req)
  local wait, err = over_limit(req.ip)
  if err then
    log.error("admin sign-in: redis unavailable", { err = err })
    return form(503, "Signing in is unavailable right now (Redis cannot be reached). Try again shortly.")
  end
  if wait then
    log.warn("admin sign-in refused: too many attempts", { ip = req.ip })
    return form(429, "Too many sign-in attempts. Try again in " .. render.age(wait) .. ".",
      { ["Retry-After"] = tostring(wait) })
  end
  local got = req.form().secret
  local want = config.get("ADMIN_TOKEN")
  if type(got) ~= "string" or not crypto.equal(crypto.sha256(got), crypto.sha256(want)) then
    log.warn("admin sign-in refused: wrong secret", { ip = req.ip })
    return form(401, "That is not the operator secret.")
  end
  log.info("admin signed in", { ip = req.ip })
  return render.redirect("/admin", session.issue())
end

function _M.signout()
  return render.redirect("/admin/signin", session.clear())
end

return _M
