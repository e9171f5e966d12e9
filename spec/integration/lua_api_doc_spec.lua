-- docs/lua-api.md held to the code: every public mc.* module has a section, every
-- key it exports is documented there, every documented function or method exists,
-- every module is either public or listed as internal, and every `lua` example runs.
local host = require "mc.host"
local file = require "mc.file"
local md = require "support.markdown"

local DOC = "docs/lua-api.md"

local PUBLIC = { "json", "log", "env", "url", "pg", "redis", "conns", "http", "crypto", "mail",
  "template", "file", "host", "cron", "redact", "isolate", "web", "jobs", "sched" }

-- method alias in the doc -> a live object whose methods it documents
local function instances()
  local objs = {
    conn = assert(require("mc.pg").connect()),
    r = assert(require("mc.redis").connect()),
    iso = assert(require("mc.isolate").new()),
    router = require("mc.web").router(),
    s = require("mc.sched").new(),
    keyring = require("mc.crypto").keyring("k1:" .. require("mc.crypto").new_key()),
    matcher = assert(require("mc.cron").parse("* * * * *")),
    mailer = assert(require("mc.mail").new({ from = "a@b.example", smtp_url = "smtp://127.0.0.1:9" })),
  }
  objs.r:pipeline(function(p) objs.p = p end)
  return objs
end

-- Methods of objects no spec can cheaply make here (an HTTP response needs a
-- server): looked up in the module's source instead.
local BY_SOURCE = { res = { "core/lua/mc/http.lua", "Response" } }

local doc = assert(file.read(host.root .. "/" .. DOC))
local sections = md.sections(doc)

local function section(name)
  return assert(sections[name], DOC .. " has no section '## " .. name .. "'")
end

describe(DOC, function()
  it("covers every mc.* module, as public or internal", function()
    local internal = section("Internal modules")
    for name in pairs(package.preload) do
      local short = name:match("^mc%.(.+)$")
      if short then
        local public = sections["mc." .. short] ~= nil
        local listed = internal:find("`mc." .. short .. "`", 1, true) ~= nil
        assert.is_true(public or listed, "mc." .. short .. " is neither documented nor listed as internal")
      end
    end
  end)

  for _, short in ipairs(PUBLIC) do
    it("documents every key mc." .. short .. " exports, and nothing it lacks", function()
      local text = section("mc." .. short)
      local mod = require("mc." .. short)
      local documented = md.entries(text, short, ".")
      for key in pairs(mod) do
        if type(key) == "string" and not key:find("^_") then
          assert.is_true(documented[key] ~= nil, DOC .. ": mc." .. short .. "." .. key .. " is not documented")
        end
      end
      for key in pairs(documented) do
        assert.is_true(mod[key] ~= nil, DOC .. ": `" .. short .. "." .. key .. "` is documented but mc." ..
          short .. " has no such key")
      end
    end)
  end

  it("documents only methods that exist", function()
    local objs = instances()
    local checked = 0
    for title, text in pairs(sections) do
      for alias in pairs(md.aliases(text)) do
        local obj, source = objs[alias], BY_SOURCE[alias]
        assert.is_true(obj ~= nil or source ~= nil, DOC .. " (" .. title .. "): no object known for `" .. alias .. ":`")
        for method in pairs(md.entries(text, alias, ":")) do
          checked = checked + 1
          if obj then
            assert.is_true(type(obj[method]) == "function",
              DOC .. ": `" .. alias .. ":" .. method .. "` does not exist")
          else
            local src = assert(file.read(host.root .. "/" .. source[1]))
            assert.truthy(src:find("function " .. source[2] .. ":" .. method .. "(", 1, true),
              DOC .. ": `" .. alias .. ":" .. method .. "` is not in " .. source[1])
          end
        end
      end
    end
    assert.is_true(checked >= 20, "the method entries were not found (" .. checked .. ")")
    objs.conn:close(); objs.r:close(); objs.iso:close()
  end)

  it("lists every tenant hook lib.hooks knows", function()
    local text = section("Tenant hooks")
    for name in pairs(require("lib.hooks").HOOKS) do
      assert.truthy(text:find("- `" .. name .. "(", 1, true), DOC .. ": tenant hook " .. name .. " is not documented")
    end
  end)

  local examples = md.code_blocks(doc, "lua")
  it("has an example per public module", function()
    assert.is_true(#examples >= #PUBLIC, #examples .. " examples")
  end)
  for _, ex in ipairs(examples) do
    it("runs the example under '" .. ex.section .. "' (line " .. ex.line .. ")", function()
      local chunk = assert(load(ex.code, "=" .. DOC .. ":" .. ex.line, "t", setmetatable({}, { __index = _G })))
      local ok, err = xpcall(chunk, debug.traceback)
      assert.is_true(ok, err)
    end)
  end
end)
