-- social.provider: the pure helpers every provider shares (text, ids, times).
local provider = require "social.provider"

describe("social.provider", function()
  describe("html_to_text", function()
    it("reduces Mastodon's status HTML to text, links whole", function()
      local html = '<p>It&#39;s been a week of Postgres &amp; coffee <a href="https://sandbox.social/tags/heroku" '
        .. 'class="mention hashtag" rel="tag">#<span>heroku</span></a></p>'
        .. '<p>see <a href="https://example.com/posts/42" '
        .. 'target="_blank" rel="nofollow noopener noreferrer"><span class="invisible">https://</span>'
        .. '<span class="">example.com/posts/42</span><span class="invisible"></span></a><br>bye<br />now</p>'
      assert.equal("It's been a week of Postgres & coffee #heroku\n\nsee https://example.com/posts/42\nbye\nnow",
        provider.html_to_text(html))
    end)

    it("decodes entities after the tags are gone, so escaped markup stays text", function()
      assert.equal("<script>alert(1)</script> & \"q\" \u{1F600} \u{a0}x",
        provider.html_to_text("<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot; &#x1F600; &nbsp;x</p>"))
      assert.equal("&bogus; \u{fffd}", provider.html_to_text("&bogus; &#0;"))
      assert.equal("", provider.html_to_text(nil))
    end)
  end)

  describe("clean_text", function()
    it("keeps quotes, backslashes, emoji, RTL and control characters; drops NUL; repairs bad UTF-8", function()
      local hostile = "'; DROP TABLE x; -- \"q\" \\N \\. \t\r\n\u{1F525}\u{200F}שלום\u{202E}abc\1\127"
      assert.equal(hostile, provider.clean_text(hostile))
      assert.equal("ab", provider.clean_text("a\0b"))
      assert.equal("a\u{fffd}b", provider.clean_text("\0a\xff\0b")) -- both at once
      assert.equal("\u{fffd}", provider.clean_text("\xed\xa0\x80"):sub(1, 3)) -- a surrogate is not UTF-8
      assert.equal("a\u{fffd}b\u{fffd}\u{fffd}", provider.clean_text("a\xffb\xe2\x82")) -- one per bad byte
    end)

    it("truncates by characters, not bytes", function()
      assert.equal("\u{1F600}\u{1F600}", provider.truncate("\u{1F600}\u{1F600}\u{1F600}", 2))
      assert.equal("abc", provider.truncate("abc", nil))
      assert.equal("\u{e9}\u{e9}\u{e9}", provider.truncate("\u{e9}\u{e9}\u{e9}", 4)) -- 6 bytes, 3 characters
      assert.equal("ab", provider.truncate("abc", 2))
    end)
  end)

  describe("ids and times", function()
    it("compares decimal ids of any length as numbers", function()
      assert.is_true(provider.id_less("999", "1000"))
      assert.is_false(provider.id_less("1000", "999"))
      assert.is_true(provider.id_less("1460323737035677698", "1460323737035677699"))
      assert.is_false(provider.id_less("5", "5"))
      -- leading zeros (neither API sends them) do not count
      assert.is_true(provider.id_less("007", "10"))
      assert.is_false(provider.id_less("010", "9"))
      assert.is_false(provider.id_less("0", "00"))
      assert.is_true(provider.id_less("00", "1"))
      assert.is_true(provider.is_id("1460323737035677698"))
      assert.is_false(provider.is_id("12a"))
      assert.is_false(provider.is_id(12))
    end)

    it("reads ISO 8601 UTC time stamps without the local zone", function()
      assert.equal(1637002176, provider.iso_epoch("2021-11-15T18:49:36.000Z"))
      assert.equal(0, provider.iso_epoch("1970-01-01T00:00:00Z"))
      assert.equal(951782400, provider.iso_epoch("2000-02-29T00:00:00.000000Z"))
      assert.is_nil(provider.iso_epoch("yesterday"))
      assert.is_true(provider.is_time("2021-11-15T18:49:36.000Z"))
      assert.is_false(provider.is_time("2021-11-15T18:49:36+01:00'); --"))
    end)
  end)

  it("knows its providers and refuses others", function()
    assert.is_table(provider.load("x"))
    assert.is_table(provider.load("mastodon"))
    local ok, err = provider.load("myspace")
    assert.is_nil(ok)
    assert.equal("unknown social provider myspace", err)
  end)
end)
