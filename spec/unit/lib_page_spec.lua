-- lib.page.render: the OAuth hops' HTML pages -- status passed through, every value
-- escaped, and the headers that keep the page out of caches, frames and Referers.
local page = require "lib.page"

describe("lib.page", function()
  it("answers status, a complete HTML document with the title twice and the text once, and its headers", function()
    local status, html, headers = page.render(200, "Connected", "You can close this window.")
    assert.equal(200, status)
    assert.equal('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Connected</title></head>'
      .. '<body><h1>Connected</h1><p>You can close this window.</p></body></html>', html)
    assert.same({ ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store",
      ["X-Frame-Options"] = "DENY", ["Referrer-Policy"] = "no-referrer" }, headers)
  end)

  it("passes any status through (the error pages)", function()
    assert.equal(400, (page.render(400, "t", "x")))
    assert.equal(403, (page.render(403, "t", "x")))
  end)

  it("escapes the five HTML-significant characters in title and text", function()
    local _, html = page.render(400, [[<script>alert("t")</script>]], [[Tom & Jerry's <b>org</b> "x"]])
    assert.is_nil(html:find("<script>", 1, true))
    assert.is_nil(html:find("<b>", 1, true))
    assert.truthy(html:find("<title>&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;</title>", 1, true))
    assert.truthy(html:find("<h1>&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;</h1>", 1, true))
    assert.truthy(html:find("<p>Tom &amp; Jerry&#39;s &lt;b&gt;org&lt;/b&gt; &quot;x&quot;</p>", 1, true))
  end)

  it("does not escape twice, and keeps non-ASCII text as it is", function()
    local _, html = page.render(200, "&amp;", "Société \u{1F600}")
    assert.truthy(html:find("<h1>&amp;amp;</h1>", 1, true))
    assert.truthy(html:find("<p>Société \u{1F600}</p>", 1, true))
  end)

  it("renders a non-string value (an error code, nil) as its text", function()
    local _, html = page.render(500, 42, nil)
    assert.truthy(html:find("<h1>42</h1><p>nil</p>", 1, true))
  end)
end)
