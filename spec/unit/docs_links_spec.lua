-- Every pointer a reader follows must lead somewhere in a clone of this repository.
-- Checked over the files git knows (tracked, plus new ones not ignored):
--   - no file mentions the team's private folder (the "shared" folder beside
--     the checkout): a clone does not have it;
--   - every relative [text](path) link in a Markdown file names a file or folder
--     of the repository (http(s), mailto and #anchor-only links are not checked;
--     a path's own #anchor is dropped; code spans and fenced blocks are skipped);
--   - every "<name>.md §N" citation names a file of docs/ with a heading "N" or
--     "N. ..." in it, so a comment citing docs/external-apis.md §1.9 stays findable.
-- The private folder's name is assembled below, so this file does not match itself.
local host = require "mc.host"
local file = require "mc.file"

local ROOT = host.root
local PRIVATE = { ".." .. "/shared/", "/work" .. "/shared" }

-- The repository's files, relative to ROOT. git when there is a checkout; a
-- tree without one (an unpacked tarball) is walked instead, build output aside.
local function repo_files()
  local list = {}
  local p = io.popen("cd '" .. ROOT .. "' && git ls-files --cached --others --exclude-standard 2>/dev/null")
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  if #list == 0 then
    p = io.popen("cd '" .. ROOT .. "' && find . -type f -not -path './.git/*' -not -path './var/*'"
      .. " -not -path './build/*' -not -path './bin/*' | sed 's|^\\./||'")
    for line in p:lines() do list[#list + 1] = line end
    p:close()
  end
  table.sort(list)
  return list
end

-- The set of paths a link may name: every file, and every folder above one.
local function known_paths(files)
  local set = { [""] = true }
  for _, f in ipairs(files) do
    set[f] = true
    local dir = f
    while true do
      dir = dir:match("^(.*)/[^/]*$")
      if not dir or set[dir] then break end
      set[dir] = true
    end
  end
  return set
end

-- normalize("docs", "../README.md") -> "README.md"; nil when it leaves the repository.
local function normalize(dir, path)
  local parts = {}
  local full = (path:sub(1, 1) == "/") and path:sub(2) or ((dir ~= "" and (dir .. "/") or "") .. path)
  for seg in full:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return table.concat(parts, "/")
end

-- links(text) -> {{target, line}...}: inline Markdown links outside code.
local function links(text)
  local found, fenced, n = {}, false, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:match("^%s*```") or line:match("^%s*~~~") then
      fenced = not fenced
    elseif not fenced then
      local prose = line:gsub("``.-``", ""):gsub("`[^`]*`", "")
      for target in prose:gmatch("%[[^%]]*%]%(%s*<?([^%s%)>]+)>?[^%)]*%)") do
        found[#found + 1] = { target, n }
      end
    end
  end
  return found
end

local function external(target)
  return target:match("^%a[%w+.-]*:") ~= nil or target:sub(1, 1) == "#"
end

-- headings(text) -> set of section numbers ("1", "1.9", "5.2") its headings start with
local function headings(text)
  local set = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local title = line:match("^#+%s+(.*)$")
    local num = title and (title:match("^§%s*(%d[%d%.]*)") or title:match("^(%d[%d%.]*)"))
    if num then set[(num:gsub("%.$", ""))] = true end
  end
  return set
end

local function is_text(data) return not data:find("\0", 1, true) end

describe("links and pointers in the repository", function()
  local files = repo_files()
  local paths = known_paths(files)

  it("finds the repository's files", function()
    assert.is_true(#files > 50, "listed only " .. #files .. " files under " .. ROOT)
    assert.is_true(paths["README.md"] and paths["scripts"] and true or false)
  end)

  it("resolves relative links the way a Markdown viewer does", function()
    assert.equal("README.md", normalize("docs", "../README.md"))
    assert.equal("docs/design.md", normalize("", "./docs/design.md"))
    assert.is_nil(normalize("", "../elsewhere/design.md"))
    local got = links("see [a](docs/a.md#x) and [b](http://x.y/z)\n```\nt[1](x)\n```\n`[c](nope.md)` [d]( <e f.md> )")
    assert.same({ { "docs/a.md#x", 1 }, { "http://x.y/z", 1 }, { "e", 5 } }, got)
    assert.same({ ["1"] = true, ["1.9"] = true, ["5"] = true },
      headings("# title\n## 1. One\n### 1.9 Pitfalls\n## §5 Social\ntext 2.1"))
  end)

  it("never points at the team's private folder", function()
    local bad = {}
    for _, f in ipairs(files) do
      local data = file.read(ROOT .. "/" .. f)
      if data and is_text(data) then
        local n = 0
        for line in (data .. "\n"):gmatch("([^\n]*)\n") do
          n = n + 1
          for _, needle in ipairs(PRIVATE) do
            if line:find(needle, 1, true) then bad[#bad + 1] = f .. ":" .. n .. ": " .. line end
          end
        end
      end
    end
    assert.same({}, bad, "lines that point outside the repository:\n" .. table.concat(bad, "\n"))
  end)

  it("links only to paths the repository has", function()
    local bad = {}
    for _, f in ipairs(files) do
      if f:match("%.md$") then
        local data = assert(file.read(ROOT .. "/" .. f))
        local dir = f:match("^(.*)/[^/]*$") or ""
        for _, l in ipairs(links(data)) do
          local target, line = l[1], l[2]
          if not external(target) then
            local path = target:gsub("#.*$", ""):gsub("%?.*$", ""):gsub("/$", "")
            local resolved = normalize(dir, path)
            if not resolved then
              bad[#bad + 1] = string.format("%s:%d: %s leaves the repository", f, line, target)
            elseif not paths[resolved] then
              bad[#bad + 1] = string.format("%s:%d: %s (%s) does not exist", f, line, target, resolved)
            end
          end
        end
      end
    end
    assert.same({}, bad, "dead links:\n" .. table.concat(bad, "\n"))
  end)

  it("cites only sections that the docs have", function()
    local docs = {}
    for _, f in ipairs(files) do
      local name = f:match("^docs/([^/]+%.md)$")
      if name then docs[name] = headings(assert(file.read(ROOT .. "/" .. f))) end
    end
    local bad = {}
    for _, f in ipairs(files) do
      local data = file.read(ROOT .. "/" .. f)
      if data and is_text(data) and f ~= "spec/unit/docs_links_spec.lua" then
        local n = 0
        for line in (data .. "\n"):gmatch("([^\n]*)\n") do
          n = n + 1
          -- "name.md §1.9", "name.md`) §1.9", "name.md §4, §5"
          for name, rest in line:gmatch("([%w_%-]+%.md)[`%)%]]*%s+(§[§%d%.,%s]+)") do
            for num in rest:gmatch("§(%d[%d%.]*)") do
              num = num:gsub("%.$", "")
              if not docs[name] then
                bad[#bad + 1] = string.format("%s:%d: %s §%s: no docs/%s", f, n, name, num, name)
              elseif not docs[name][num] then
                bad[#bad + 1] = string.format("%s:%d: docs/%s has no section %s", f, n, name, num)
              end
            end
          end
        end
      end
    end
    assert.same({}, bad, "citations of missing sections:\n" .. table.concat(bad, "\n"))
  end)
end)
