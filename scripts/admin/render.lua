-- admin.render: the dashboard's pages from plain templates
-- (scripts/admin/templates/*.html, read at each render, HTML-escaped by
-- mc.template), and its responses. Every page gets the same security headers:
-- no script, style or image from anywhere but /admin/static, no framing, no
-- caching, no referrer.
local template = require "mc.template"
local file = require "mc.file"
local host = require "mc.host"

local _M = {}

_M.HEADERS = {
  ["Content-Type"] = "text/html; charset=utf-8",
  ["Content-Security-Policy"] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    .. "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  ["X-Frame-Options"] = "DENY", ["X-Content-Type-Options"] = "nosniff",
  ["Referrer-Policy"] = "no-referrer", ["Cache-Control"] = "no-store",
}

local function dir() return host.root .. "/scripts/admin/templates/" end

-- Seconds as a person reads an age: 45s, 12m, 3h 5m, 2d 4h.
function _M.age(s)
  s = math.floor(tonumber(s) or 0)
  if s < 60 then return s .. "s" end
  if s < 3600 then return (s // 60) .. "m" end
  if s < 86400 then return string.format("%dh %dm", s // 3600, s % 3600 // 60) end
  return string.format("%dd %dh", s // 86400, s % 86400 // 3600)
end

-- A value that may be mc.null, as text ("" for none).
function _M.text(v)
  if v == nil or v == mc.null then return "" end
  return tostring(v)
end

-- fragment(name, vars) -> html; a template that fails to render is a bug: it raises
function _M.fragment(name, vars)
  local src = assert(file.read(dir() .. name))
  vars.age, vars.text = _M.age, _M.text
  local out, err = template.render(src, vars, { html = true, name = name })
  if not out then error(err, 2) end
  return out
end

-- page(status, name, vars[, headers]) -> status, html, headers: the template
-- inside the layout. vars.title names the page; vars.csrf (signed-in pages) is
-- given to the layout's sign-out form.
function _M.page(status, name, vars, headers)
  local body = _M.fragment(name, vars)
  local html = _M.fragment("layout.html", { title = vars.title, body = template.raw(body),
    csrf = vars.csrf or false, flash = vars.flash or false, nav = vars.nav or false })
  local out = {}
  for k, v in pairs(_M.HEADERS) do out[k] = v end
  for k, v in pairs(headers or {}) do out[k] = v end
  return status, html, out
end

-- message(status, title, text[, headers]) -> a page that says one thing
function _M.message(status, title, text, headers)
  return _M.page(status, "message.html", { title = title, message = text }, headers)
end

-- redirect(path[, set_cookie]) -> 303 to one of our paths
function _M.redirect(path, set_cookie)
  return 303, "", { Location = path, ["Cache-Control"] = "no-store", ["Set-Cookie"] = set_cookie }
end

return _M
