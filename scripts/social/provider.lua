-- social.provider: the one interface every social source implements, and the
-- helpers they share. A provider is a module scripts/social/providers/<name>.lua:
--
--   provider.new{base_url, token, page_size, request} -> client
--     request(opts) -> res | nil, err, retryable, res   (default lib.api.call;
--     specs pass a function answering recorded responses)
--   client:source(account) -> source | nil, reason
--     account = {sfid, name, handle, ...} (what the social_accounts hook gave);
--     source is the stable key of the feed followed for it (the cursor's key)
--   client:fetch(source, cursor, page) -> result | nil, err, failure
--     cursor = {since_id, until_id} (either may be nil): posts newer than
--     since_id and older than until_id, newest first; page is nil for the first
--     page, else the previous result's `next`.
--     result = {posts = {post...}, next = opaque | nil, rate = {remaining, reset} | nil}
--     post   = {id, text, author, posted_at, likes, retweets, url}: id a decimal
--              string, text plain (HTML reduced), posted_at ISO 8601 UTC
--     failure = {rate_limited = true, reset = epoch} (429 or nothing left in the
--              window) | {retryable = boolean}
--
-- _M.load(name) -> the provider module; the shared helpers below are pure.
local host = require "mc.host"
local api = require "lib.api"
local days_from_civil = require("lib.civil").days

local byte, find, ulen = string.byte, string.find, utf8.len

local _M = {}

_M.NAMES = { x = true, mastodon = true }

function _M.load(name)
  if not _M.NAMES[name] then return nil, "unknown social provider " .. tostring(name) end
  return require("social.providers." .. name)
end

-- The request function providers use unless given one.
_M.request = api.call

-- ---- text ------------------------------------------------------------------

local ENTITIES = { amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = "\u{a0}" }

local function codepoint(n)
  -- NUL, surrogates and out-of-range numbers cannot be stored as text
  if not n or n == 0 or n > 0x10ffff or (n >= 0xd800 and n <= 0xdfff) then return "\u{fffd}" end
  return utf8.char(n)
end

local function entity(name)
  if name:sub(1, 2) == "#x" or name:sub(1, 2) == "#X" then return codepoint(tonumber(name:sub(3), 16)) end
  if name:sub(1, 1) == "#" then return codepoint(tonumber(name:sub(2), 10)) end
  return ENTITIES[name:lower()]
end

-- decode_entities(s): named (the common few) and numeric character references;
-- an unknown one stays as written.
function _M.decode_entities(s)
  return (s:gsub("&(#?[%w]+);", function(name) return entity(name) end))
end

-- html_to_text(html): Mastodon's status HTML as plain text. Paragraphs become
-- blank-line breaks, <br> a line break, every other tag goes and its text stays
-- (the "invisible" spans hold the parts of a link Mastodon shortens on screen,
-- so keeping them gives the whole URL); entities are decoded after the tags are
-- gone, so an escaped "&lt;b&gt;" comes out as the literal text "<b>".
function _M.html_to_text(html)
  if type(html) ~= "string" then return "" end
  local s = html:gsub("<[Bb][Rr]%s*/?>", "\n")
  s = s:gsub("</[Pp]>%s*<[Pp][^>]*>", "\n\n")
  s = s:gsub("<!%-%-.-%-%->", "")
  s = s:gsub("<[%a/!][^>]*>", "")
  s = _M.decode_entities(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- clean_text(s): what any post's text must be before Postgres sees it: valid
-- UTF-8 (a bad byte becomes U+FFFD) without NUL (text columns cannot hold it).
-- Everything else -- quotes, backslashes, emoji, right-to-left marks, other
-- control characters -- is kept as it came.
-- The common case, a clean text, is two C scans (memchr and utf8.len) and no
-- copy: a pattern (gsub "%z") tests a class at every byte, several times slower.
function _M.clean_text(s)
  if type(s) ~= "string" then return "" end
  if find(s, "\0", 1, true) then s = s:gsub("%z", "") end
  if ulen(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then out[#out + 1] = s:sub(i); break end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{fffd}"
    i = bad + 1
  end
  return table.concat(out)
end

-- truncate(s, chars): at most `chars` UTF-8 characters (a column's length).
-- No more bytes than `chars` is no more characters either: no count needed.
function _M.truncate(s, chars)
  if not chars or #s <= chars or ulen(s) <= chars then return s end
  return s:sub(1, utf8.offset(s, chars + 1) - 1)
end

-- ---- ids and times -----------------------------------------------------------

-- is_id(s): a decimal id as both APIs send them (strings, up to 30 digits)
function _M.is_id(s)
  return type(s) == "string" and #s <= 30 and s:match("^%d+$") ~= nil
end

-- id_less(a, b): a < b for decimal id strings of any length
-- (ids with leading zeros, which neither API sends, are stripped of them first)
function _M.id_less(a, b)
  if byte(a) == 48 and #a > 1 then a = a:gsub("^0+(%d)", "%1") end
  if byte(b) == 48 and #b > 1 then b = b:gsub("^0+(%d)", "%1") end
  if #a ~= #b then return #a < #b end
  return a < b
end


-- iso_epoch(s) -> epoch seconds of an ISO 8601 UTC time stamp ("...Z" or no
-- zone), or nil. Pure arithmetic: os.time would read the local zone.
function _M.iso_epoch(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, sec = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)")
  if not y then return nil end
  return days_from_civil(tonumber(y), tonumber(mo), tonumber(d)) * 86400 + h * 3600 + mi * 60 + sec
end

-- is_time(s): an ISO 8601 time stamp we pass to Postgres as is
function _M.is_time(s)
  return _M.iso_epoch(s) ~= nil and s:match("^[%d%-T:. ]+Z?$") ~= nil
end

-- ---- rate limits ---------------------------------------------------------------

-- rate(remaining, reset_epoch) -> {remaining, reset} | nil when the headers say nothing
function _M.rate(remaining, reset)
  remaining = math.tointeger(tonumber(remaining))
  reset = tonumber(reset)
  if not remaining and not reset then return nil end
  return { remaining = remaining, reset = reset }
end

-- failure(err, retryable, res, rate) -> nil, err, failure: a 429 (or a spent
-- window) is "rate limited until reset", defaulting to a minute from now.
function _M.failure(err, retryable, res, rate)
  if res and res.status == 429 then
    local reset = rate and rate.reset
    local after = api.retry_after(res)
    if not reset or reset <= host.time() then reset = host.time() + (after or 60) end
    return nil, err, { rate_limited = true, reset = reset }
  end
  return nil, err, { retryable = retryable and true or false }
end

return _M
