-- support.markdown: the little Markdown reading the docs specs need (sections,
-- fenced code blocks, API entries), so a doc's examples and claims can be checked.
local _M = {}

-- sections(text) -> {["title"] = body} for every "## title" (body up to the next
-- "## " heading; deeper headings stay inside).
function _M.sections(text)
  local out, title, lines = {}, nil, {}
  local function flush() if title then out[title] = table.concat(lines, "\n") end end
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local t = line:match("^## (.+)$")
    if t then
      flush()
      title, lines = t, {}
    else
      lines[#lines + 1] = line
    end
  end
  flush()
  return out
end

-- code_blocks(text, lang) -> { {code =, line =, section =}, ... } for every fenced
-- block whose info string is exactly lang (```lua): the examples a spec runs.
function _M.code_blocks(text, lang)
  local out, n, current, section = {}, 0, nil, "top"
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if current then
      if line:match("^```%s*$") then
        current.code = table.concat(current.lines, "\n")
        current.lines = nil
        out[#out + 1] = current
        current = nil
      else
        current.lines[#current.lines + 1] = line
      end
    else
      section = line:match("^##+ (.+)$") or section
      if line == "```" .. lang then current = { lines = {}, line = n + 1, section = section } end
    end
  end
  return out
end

-- entries(text, prefix, sep) -> {name = true} for every `prefix<sep>name` in code
-- spans (`pg.connect(`, `conn:query(`, `host.root`): what a section documents.
function _M.entries(text, prefix, sep)
  local out = {}
  local pat = "`" .. prefix:gsub("%p", "%%%0") .. "%" .. sep .. "([%a_][%w_]*)"
  for name in text:gmatch(pat) do out[name] = true end
  -- later names in the same span: `http.head`, ... each start their own span
  return out
end

-- aliases(text) -> {alias = true} for every `alias:method(` in code spans.
function _M.aliases(text)
  local out = {}
  for alias in text:gmatch("`([%a_][%w_]*):[%a_][%w_]*%(") do out[alias] = true end
  return out
end

return _M
