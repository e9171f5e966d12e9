-- mc.template: text and HTML templates on Penlight's pl.template, with HTML
-- escaping applied by default.
--   local out, err = template.render(src, { org = { name = "<Acme>" } }, { html = true })
-- Syntax (pl.template's, with ${} brackets so that $( and # in CSS/JS stay text):
--   ${expr}        the value of a Lua expression; in an HTML template escaped
--                  (& < > " ' become entities), so a variable is always text
--   ${raw(expr)}   the value as is: only for trusted fragments (markup we wrote)
--   # lua          a line starting with # is Lua: # if x then / # for ... do / # end
-- Templates see only their variables plus ipairs, pairs, tostring, tonumber, type,
-- string, table, math and raw. A name that is not a variable is an error (a typo
-- must not mail an empty link), unless opts.strict == false; pass false for an
-- optional value the template tests with `# if`.
local pl_template = require "pl.template"

local _M = {}

local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- escape(s) -> s with the five HTML-significant characters as entities
function _M.escape(s)
  return (tostring(s):gsub("[&<>\"']", ENTITIES))
end

local Raw = {}
Raw.__tostring = function(r) return r.s end

-- raw(s): marks s as markup to insert unescaped.
local function raw(s)
  return setmetatable({ s = tostring(s) }, Raw)
end
_M.raw = raw

local BUILTINS = { ipairs = ipairs, pairs = pairs, tostring = tostring, tonumber = tonumber,
                   type = type, string = string, table = table, math = math, raw = raw }

local function html_tostring(v)
  if getmetatable(v) == Raw then return v.s end
  return _M.escape(v)
end

local function text_tostring(v)
  return tostring(v)
end

-- The names a template reads resolve here: builtins, then vars, else (strict) an error.
local function scope(vars, strict)
  return setmetatable({}, {
    __index = function(_, k)
      local v = BUILTINS[k]
      if v ~= nil then return v end
      v = vars[k]
      if v == nil and strict then error("undefined variable '" .. tostring(k) .. "'", 2) end
      return v
    end,
  })
end

-- The first line of Lua's error message, without the traceback pl.template adds
-- and without the line number, which counts lines of the generated code.
local function first_line(err)
  return (tostring(err):match("^[^\n]*"):gsub("^([^:]*):%d+:", "%1:"))
end

-- render(src, vars?, {html = false, strict = true, name = "template"}) -> string | nil, err
function _M.render(src, vars, opts)
  if type(src) ~= "string" then error("template: source must be a string", 2) end
  if vars ~= nil and type(vars) ~= "table" then error("template: vars must be a table", 2) end
  opts = opts or {}
  local name = opts.name or "template"
  local ct, err = pl_template.compile(src, { chunk_name = "=" .. name, inline_escape = "$", inline_brackets = "{}" })
  if not ct then return nil, "template " .. first_line(err) end
  -- pl.template (1.13) renders every ${} through the __tostring of the compiled
  -- chunk's environment; escaping there covers every substitution, whatever
  -- the expression. Checked, so a Penlight that changes this fails loudly.
  if type(ct.env) ~= "table" or rawget(ct.env, "__tostring") ~= tostring then
    error("template: unsupported pl.template version (no __tostring hook)")
  end
  rawset(ct.env, "__tostring", opts.html and html_tostring or text_tostring)
  local out, rerr = ct:render(scope(vars or {}, opts.strict ~= false))
  if not out then return nil, "template " .. first_line(rerr) end
  return out
end

return _M
