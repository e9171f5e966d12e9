-- social.providers.x: X API v2 recent search (docs/external-apis.md §5.1), the interface of
-- social/provider.lua. One source per handle: posts from it or mentioning it,
-- retweets left out (their text repeats the original's).
--   GET {base}/2/tweets/search/recent?query=(from:h OR @h) -is:retweet
--       &max_results&since_id&until_id&next_token
--       &tweet.fields=created_at,author_id,public_metrics&expansions=author_id
--       &user.fields=username
-- App-only bearer token. Authors come from includes.users (author expansion);
-- likes and retweets from public_metrics. Every response carries
-- x-rate-limit-remaining/-reset (unix seconds); 429 when the window is spent.
local provider = require "social.provider"

local _M = {}

local Client = {}
Client.__index = Client

local HANDLE = "^[%w_]+$" -- X handles: letters, digits, underscore, 1..15

function _M.new(opts)
  if type(opts.base_url) ~= "string" then error("x: base_url required", 2) end
  local size = math.tointeger(opts.page_size or 100)
  if not size or size < 10 or size > 100 then error("x: page_size must be 10..100", 2) end
  return setmetatable({ base_url = opts.base_url:gsub("/+$", ""), token = opts.token,
    page_size = size, request = opts.request or provider.request }, Client)
end

-- source(account) -> the handle without "@" (lower-cased: X handles are not
-- case-sensitive, so "Acme" and "acme" share a cursor) | nil, reason
function Client:source(account)
  local h = type(account.handle) == "string" and account.handle:match("^%s*@?(.-)%s*$") or ""
  if h == "" then return nil, "no handle" end
  if #h > 15 or not h:match(HANDLE) then return nil, "not an X handle: " .. h end
  return h:lower()
end

-- query_for(source): the search expression for a handle
function _M.query_for(source)
  return string.format("(from:%s OR @%s) -is:retweet", source, source)
end

function Client:params(source, cursor, page)
  local q = {
    query = _M.query_for(source), max_results = tostring(self.page_size),
    ["tweet.fields"] = "created_at,author_id,public_metrics", expansions = "author_id",
    ["user.fields"] = "username",
  }
  if cursor.since_id then q.since_id = cursor.since_id end
  if cursor.until_id then q.until_id = cursor.until_id end
  if page then q.next_token = page end
  return q
end

-- parse(doc) -> {posts, next} | nil, err: a 200 body
function _M.parse(doc)
  if type(doc) ~= "table" or type(doc.meta) ~= "table" then return nil, "x: response without meta" end
  local users = {}
  local inc = type(doc.includes) == "table" and doc.includes.users
  for _, u in ipairs(type(inc) == "table" and inc or {}) do
    if type(u) == "table" and type(u.id) == "string" then users[u.id] = u.username end
  end
  local posts = {}
  for _, t in ipairs(type(doc.data) == "table" and doc.data or {}) do
    if type(t) ~= "table" or not provider.is_id(t.id) then return nil, "x: post without a valid id" end
    local m = type(t.public_metrics) == "table" and t.public_metrics or {}
    posts[#posts + 1] = {
      id = t.id, text = provider.clean_text(t.text),
      author = type(users[t.author_id]) == "string" and users[t.author_id] or nil,
      posted_at = provider.is_time(t.created_at) and t.created_at or nil,
      likes = math.tointeger(m.like_count), retweets = math.tointeger(m.retweet_count),
    }
  end
  local next_token = doc.meta.next_token
  if type(next_token) ~= "string" or next_token == "" then next_token = nil end
  return { posts = posts, next = next_token }
end

local function rate_of(res)
  local h = res and res.headers or {}
  return provider.rate(h["x-rate-limit-remaining"], h["x-rate-limit-reset"])
end

function Client:fetch(source, cursor, page)
  local headers = { Accept = "application/json" }
  if self.token then headers.Authorization = "Bearer " .. self.token end
  local res, err, retryable, bad = self.request({ service = "x", method = "GET",
    url = self.base_url .. "/2/tweets/search/recent", query = self:params(source, cursor or {}, page),
    headers = headers })
  if not res then return provider.failure(err, retryable, bad, rate_of(bad)) end
  local doc, jerr = res:json()
  if not doc then return nil, "x: " .. jerr, { retryable = true } end
  local out, perr = _M.parse(doc)
  if not out then return nil, perr, { retryable = false } end
  out.rate = rate_of(res)
  return out
end

return _M
