local template = require "mc.template"

describe("mc.template", function()
  local render = template.render

  it("substitutes ${expr} with the value of a Lua expression", function()
    assert.equal("Hi Ada, 3 orgs", render("Hi ${name}, ${n + 1} orgs", { name = "Ada", n = 2 }))
    assert.equal("ACME", render("${org.name:upper()}", { org = { name = "acme" } }))
  end)

  it("escapes every substitution of an HTML template by default", function()
    local out = render('<p title="${t}">${name}</p>', { name = "<script>alert(1)</script>", t = [["x' & y]] },
      { html = true })
    assert.equal('<p title="&quot;x&#39; &amp; y">&lt;script&gt;alert(1)&lt;/script&gt;</p>', out)
  end)

  it("escapes the result of any expression, not only plain names", function()
    assert.equal("&lt;b&gt;", render("${'<' .. tag .. '>'}", { tag = "b" }, { html = true }))
  end)

  it("inserts raw(...) fragments unescaped, and only those", function()
    local out = render("${raw(frag)} ${frag}", { frag = "<i>x</i>" }, { html = true })
    assert.equal("<i>x</i> &lt;i&gt;x&lt;/i&gt;", out)
  end)

  it("leaves text templates unescaped", function()
    assert.equal("Org <script> & co", render("Org ${name} & co", { name = "<script>" }))
  end)

  it("runs # lines as Lua, for conditions and loops", function()
    local src = "Steps:\n# for i, s in ipairs(steps) do\n${i}. ${s}\n# end\n# if note then\nNote: ${note}\n# end\n"
    assert.equal("Steps:\n1. a\n2. <b>\n", render(src, { steps = { "a", "<b>" }, note = false }))
    assert.equal("Steps:\n1. &lt;b&gt;\nNote: x\n", render(src, { steps = { "<b>" }, note = "x" }, { html = true }))
  end)

  it("keeps $( and CSS braces as text", function()
    assert.equal("$(x) a { color: red }", render("$(x) a { color: red }", {}))
  end)

  it("refuses an undefined name, unless strict is off", function()
    local out, err = render("Go to ${ulr}", { url = "https://x.test" }, { name = "authenticate.txt" })
    assert.is_nil(out)
    assert.equal("template authenticate.txt: undefined variable 'ulr'", err)
    assert.equal("Go to ", render("Go to ${ulr}", {}, { strict = false }))
  end)

  it("gives templates no access to the host's globals", function()
    local out, err = render("${os.getenv('HOME')}", {})
    assert.is_nil(out)
    assert.matches("undefined variable 'os'", err)
  end)

  it("returns nil, err for a template that does not compile or fails to render", function()
    local out, err = render("${ 1 + }", {})
    assert.is_nil(out)
    assert.matches("^template template: ", err)
    out, err = render("${x.y}", { x = 1 })
    assert.is_nil(out)
    assert.matches("index", err)
  end)

  it("raises on misuse", function()
    assert.has_error(function() render(nil, {}) end, "template: source must be a string")
    assert.has_error(function() render("x", "vars") end, "template: vars must be a table")
  end)

  it("escapes with escape()", function()
    assert.equal("&amp;&lt;&gt;&quot;&#39;", template.escape([[&<>"']]))
  end)
end)
