-- social.providers.mastodon: a Mastodon instance (docs/external-apis.md §5.2), the interface
-- of social/provider.lua. An account's handle names what to follow:
--   "#tag" or "word"            tag:<word>   GET /api/v1/timelines/tag/:tag
--   "@user@host" or "user@host" acct:<user@host>
--                               GET /api/v1/accounts/lookup?acct= (its id), then
--                               GET /api/v1/accounts/:id/statuses?exclude_reblogs=true
-- Both with limit, since_id, max_id. Pages follow the Link header's rel="next";
-- only its max_id is taken, so the client never requests a URL the server made
-- up. A token (MASTODON_TOKEN) is optional. Content is HTML: reduced to text.
-- Rate limit headers X-RateLimit-Remaining / -Reset (ISO 8601); 429 when spent.
local http = require "mc.http"
local provider = require "social.provider"

local _M = {}

local Client = {}
Client.__index = Client

function _M.new(opts)
  if type(opts.base_url) ~= "string" then error("mastodon: base_url required", 2) end
  local size = math.tointeger(opts.page_size or 40)
  if not size or size < 1 or size > 40 then error("mastodon: page_size must be 1..40", 2) end
  return setmetatable({ base_url = opts.base_url:gsub("/+$", ""), token = opts.token,
    page_size = size, request = opts.request or provider.request }, Client)
end

function Client:source(account)
  local h = type(account.handle) == "string" and account.handle:match("^%s*(.-)%s*$") or ""
  if h == "" then return nil, "no handle" end
  local user, host = h:match("^@?([%w_]+)@([%w%-%.]+%.%a+)$")
  if user then return "acct:" .. user:lower() .. "@" .. host:lower() end
  local tag = h:match("^[#@]?([%w_]+)$")
  if tag and #tag <= 100 then return "tag:" .. tag:lower() end
  return nil, "not a Mastodon tag or account: " .. h
end

-- next_max_id(link) -> the max_id of a Link header's rel="next", or nil
function _M.next_max_id(link)
  if type(link) ~= "string" then return nil end
  for url, params in link:gmatch("<([^>]*)>([^,]*)") do
    if params:match('rel="?next"?') then
      local id = url:match("[?&]max_id=(%d+)")
      if provider.is_id(id) then return id end
    end
  end
  return nil
end

-- status(s) -> post | nil, err
function _M.status(s)
  if type(s) ~= "table" or not provider.is_id(s.id) then return nil, "mastodon: status without a valid id" end
  local acc = type(s.account) == "table" and s.account or {}
  local text = provider.html_to_text(s.content)
  if type(s.spoiler_text) == "string" and s.spoiler_text ~= "" then
    text = provider.html_to_text(s.spoiler_text) .. "\n\n" .. text
  end
  return {
    id = s.id, text = provider.clean_text(text),
    author = type(acc.acct) == "string" and acc.acct or nil,
    posted_at = provider.is_time(s.created_at) and s.created_at or nil,
    likes = math.tointeger(s.favourites_count), retweets = math.tointeger(s.reblogs_count),
    url = type(s.url) == "string" and s.url or nil,
  }
end

-- parse(doc, link, page_size) -> {posts, next} | nil, err: a 200 body (an array)
function _M.parse(doc, link, page_size)
  if type(doc) ~= "table" then return nil, "mastodon: response is not an array" end
  local posts = {}
  for i, s in ipairs(doc) do
    local p, err = _M.status(s)
    if not p then return nil, err end
    posts[i] = p
  end
  -- a short page is the last one: no request just to get an empty page back
  local next_id = #posts >= (page_size or 1) and _M.next_max_id(link) or nil
  return { posts = posts, next = next_id }
end

local function reset_epoch(h)
  local v = h["x-ratelimit-reset"]
  return tonumber(v) or provider.iso_epoch(v)
end

local function rate_of(res)
  local h = res and res.headers or {}
  return provider.rate(h["x-ratelimit-remaining"], reset_epoch(h))
end

function Client:get(path, query)
  local headers = { Accept = "application/json" }
  if self.token then headers.Authorization = "Bearer " .. self.token end
  local res, err, retryable, bad = self.request({ service = "mastodon", method = "GET",
    url = self.base_url .. path, query = query, headers = headers })
  if not res then return provider.failure(err, retryable, bad, rate_of(bad)) end
  local doc, jerr = res:json()
  if not doc then return nil, "mastodon: " .. jerr, { retryable = true } end
  return doc, res
end

-- The account's id for acct:user@host; the token pages carry it after the first.
function Client:account_id(acct)
  local doc, res, failure = self:get("/api/v1/accounts/lookup", { acct = acct })
  if not doc then return nil, res, failure end
  if type(doc) ~= "table" or not provider.is_id(doc.id) then
    return nil, "mastodon: lookup of " .. acct .. " gave no id", { retryable = false }
  end
  return doc.id
end

function Client:fetch(source, cursor, page)
  cursor = cursor or {}
  local kind, name = source:match("^(%a+):(.+)$")
  local path
  local state = type(page) == "table" and page or {}
  if kind == "tag" then
    path = "/api/v1/timelines/tag/" .. http.escape(name)
  elseif kind == "acct" then
    local id = state.account_id
    if not id then
      local err, failure
      id, err, failure = self:account_id(name)
      if not id then return nil, err, failure end
    end
    state.account_id = id
    path = "/api/v1/accounts/" .. id .. "/statuses"
  else
    error("mastodon: bad source " .. tostring(source), 2)
  end
  local query = { limit = tostring(self.page_size), since_id = cursor.since_id,
    max_id = state.max_id or cursor.until_id }
  if kind == "acct" then query.exclude_reblogs = "true" end
  local doc, res, failure = self:get(path, query)
  if not doc then return nil, res, failure end
  local out, perr = _M.parse(doc, res.headers["link"], self.page_size)
  if not out then return nil, perr, { retryable = false } end
  if out.next then out.next = { max_id = out.next, account_id = state.account_id } end
  out.rate = rate_of(res)
  return out
end

return _M
