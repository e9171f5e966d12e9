-- sandbox.mastodon: a Mastodon instance's hashtag timeline and accounts (docs/external-apis.md §5.2).
--   GET /api/v1/timelines/tag/:hashtag   limit (20, at most 40), max_id, since_id,
--       min_id, any[], all[], none[], local, remote, only_media; Link header with
--       rel="next" (max_id) and rel="prev" (min_id) pointing back at the sandbox
--   GET /api/v1/accounts/lookup?acct=user[@host]   the account (404 for a malformed
--       acct, or one outside knob accounts when set)
--   GET /api/v1/accounts/:id/statuses   that account's own posts, paged the same way
--       (limit, max_id, since_id, min_id, exclude_reblogs); 404 for an id no lookup gave
-- Statuses are generated per tag every knob post_interval seconds (default 1800)
-- over the last knob history_days (7), from knob seed; ids are Mastodon-style
-- snowflakes (newer = larger); content is HTML as Mastodon renders it. Knob
-- clock_offset moves "now"; knob domain names the instance (sandbox.social).
-- Public by default; knob require_token makes it 401 without a token, knob
-- access_token pins the one accepted; knob tags (array) limits the known tags
-- (others 404). Each call spends one of knob rate_limit (300) per knob
-- rate_window (300 s) per token, else per client address: X-RateLimit-* headers
-- (reset as ISO 8601), 429 {"error":"Too many requests"}.
local json = require "mc.json"
local http = require "mc.http"
local store = require "sandbox.store"
local faults = require "sandbox.faults"
local ratelimit = require "sandbox.ratelimit"
local synth = require "sandbox.synth"

local _M = {}

local DAY = 86400
local ACCOUNTS = { { "alice" }, { "bruno", "fosstodon.org" }, { "chen", "hachyderm.io" }, { "dana" },
  { "emeka", "mas.to" }, { "farah" }, { "gus", "infosec.exchange" } }
local TOPICS = { "Heroku Connect", "Postgres sync", "Salesforce flows", "our onboarding", "the new API" }
local EXTRA_TAGS = { "salesforce", "heroku", "postgres", "opensource", "devops" }
local SAYS = {
  "Trying out %s with the team today %s",
  "It&#39;s been a week of %s &amp; coffee %s",
  "Wrote up how we use %s: %s %s",
  "Anyone else seeing issues with %s? %s cc %s",
  "Small win: %s finally works end to end %s",
}

local function err(status, message, headers)
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return status, { error = message }, h
end

local function fault(status)
  return err(status, status == 503 and "Service Unavailable" or "Internal Server Error")
end

local function iso_ms(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03dZ", ms % 1000)
end

local function account(a, domain)
  local user, host = a[1], a[2] or domain
  local h = synth.hash("account|" .. user .. "@" .. host)
  local url = "https://" .. host .. "/@" .. user
  local avatar = "https://" .. domain .. "/avatars/original/missing.png"
  return {
    id = tostring(100000000000000000 + h * 1000), username = user, acct = a[2] and (user .. "@" .. host) or user,
    display_name = user:gsub("^%l", string.upper), locked = false, bot = false, discoverable = true,
    group = false, created_at = iso_ms((1500000000 + h % 200000000) * 1000 // 86400000 * 86400000),
    note = "<p>Sandbox account on " .. host .. "</p>", url = url, uri = "https://" .. host .. "/users/" .. user,
    avatar = avatar, avatar_static = avatar, header = avatar, header_static = avatar,
    followers_count = h % 5000, following_count = (h >> 4) % 800, statuses_count = (h >> 8) % 20000,
    last_status_at = os.date("!%Y-%m-%d"), emojis = json.array({}), fields = json.array({}),
  }
end

local function hashtag_html(tag, domain)
  return string.format('<a href="https://%s/tags/%s" class="mention hashtag" rel="tag">#<span>%s</span></a>',
    domain, tag, tag)
end

local function link_html(url)
  local rest = url:gsub("^https://", "")
  return string.format('<a href="%s" target="_blank" rel="nofollow noopener noreferrer" translate="no">'
    .. '<span class="invisible">https://</span><span class="">%s</span><span class="invisible"></span></a>', url, rest)
end

local function mention_html(acc)
  return string.format('<span class="h-card" translate="no">'
    .. '<a href="%s" class="u-url mention">@<span>%s</span></a></span>',
    acc.url, acc.username)
end

-- status(seed, tag, t, domain[, author]) -> the status posted to tag's feed at t
-- (by author, an ACCOUNTS entry, when given: an account's own timeline)
local function status(seed, tag, t, domain, author)
  local key = table.concat({ "mastodon", seed, tag, t, author and table.concat(author, "@") or nil }, "|")
  local h = synth.hash(key)
  local acc = account(author or synth.pick(ACCOUNTS, key, "account"), domain)
  local other = synth.pick(EXTRA_TAGS, key, "tag")
  local tags = { tag }
  if other ~= tag then tags[2] = other end
  local tags_html = {}
  for i, name in ipairs(tags) do tags_html[i] = hashtag_html(name, domain) end
  local topic = synth.pick(TOPICS, key, "topic")
  local say = synth.pick(SAYS, key, "say")
  local text
  if say:find(": %%s %%s$") then
    text = string.format(say, topic, link_html("https://example.com/posts/" .. h % 10000), table.concat(tags_html, " "))
  elseif say:find("cc %%s$") then
    local buddy = account(synth.pick(ACCOUNTS, key, "buddy"), domain)
    text = string.format(say, topic, table.concat(tags_html, " "), mention_html(buddy))
  else
    text = string.format(say, topic, table.concat(tags_html, " "))
  end
  local ms = t * 1000 + h % 1000
  local id = tostring((ms << 16) | (h & 0xffff))
  local tag_objs = {}
  for i, name in ipairs(tags) do tag_objs[i] = { name = name, url = "https://" .. domain .. "/tags/" .. name } end
  local host = acc.acct:match("@(.+)$") or domain
  return {
    id = id, created_at = iso_ms(ms), in_reply_to_id = json.null, in_reply_to_account_id = json.null,
    sensitive = false, spoiler_text = "", visibility = "public",
    language = synth.pick({ "en", "en", "en", "de", "fr" }, key, "lang"),
    uri = "https://" .. host .. "/users/" .. acc.username .. "/statuses/" .. id,
    url = "https://" .. host .. "/@" .. acc.username .. "/" .. id,
    replies_count = h % 4, reblogs_count = (h >> 3) % 9, favourites_count = (h >> 7) % 40,
    edited_at = json.null, content = "<p>" .. text .. "</p>", reblog = json.null, account = acc,
    media_attachments = json.array({}), mentions = json.array({}), tags = tag_objs,
    emojis = json.array({}), card = json.null, poll = json.null,
    sandbox_tags = tags, sandbox_local = acc.acct:find("@") == nil,
  }
end

local function list_of(v)
  if v == nil then return {} end
  if type(v) == "table" then return v end
  local out = {}
  for s in tostring(v):gmatch("[^,%s]+") do out[#out + 1] = s end
  return out
end

local function truthy(v)
  return v == "true" or v == "1" or v == true
end

local function has_tag(s, names)
  for _, want in ipairs(names) do
    for _, t in ipairs(s.sandbox_tags) do if t == want:lower() then return true end end
  end
  return false
end

-- statuses(tags, now) -> every status of the tags' feeds, newest first
local function statuses(tags, now)
  local seed = tostring(store.knob("mastodon", "seed", "sandbox"))
  local domain = store.knob("mastodon", "domain", "sandbox.social")
  local every = tonumber(store.knob("mastodon", "post_interval", 1800))
  local from = now - tonumber(store.knob("mastodon", "history_days", 7)) * DAY
  local out, seen = {}, {}
  for _, tag in ipairs(tags) do
    for _, t in ipairs(synth.instants("mastodon|" .. seed .. "|" .. tag, every, from, now)) do
      local s = status(seed, tag, t, domain)
      if not seen[s.id] then seen[s.id] = true; out[#out + 1] = s end
    end
  end
  table.sort(out, function(a, b) return math.tointeger(a.id) > math.tointeger(b.id) end)
  return out
end

local function id_param(v)
  if type(v) == "table" then v = v[1] end
  if v == nil or v == "" then return nil end
  local n = tonumber(v)
  if not n then return 0 end
  if math.type(n) == "float" then return n >= 2 ^ 63 and math.maxinteger or math.floor(math.max(n, 0)) end
  return n
end

local function known(tag)
  local tags = store.knob("mastodon", "tags")
  if type(tags) ~= "table" then return true end
  for _, t in ipairs(tags) do if tostring(t):lower() == tag then return true end end
  return false
end

local function link_header(req, prefix, path, limit, page)
  local host = req.headers["host"] or "127.0.0.1"
  local base = store.knob("mastodon", "base_url", "http://" .. host .. prefix)
  local url = base .. path
  return string.format('<%s?limit=%d&max_id=%s>; rel="next", <%s?limit=%d&min_id=%s>; rel="prev"',
    url, limit, page[#page].id, url, limit, page[1].id)
end

local paged -- below: the paging both timelines share

local function tag_timeline(req, headers, prefix)
  local tag = req.params.hashtag:lower()
  if not tag:match("^[%w_]+$") or not known(tag) then return err(404, "Record not found", headers) end
  local q = req.query
  local tags, any = { tag }, list_of(q["any[]"] or q.any)
  for _, t in ipairs(any) do tags[#tags + 1] = t:lower() end
  local all, none = list_of(q["all[]"] or q.all), list_of(q["none[]"] or q.none)
  local only_local, only_remote, only_media = truthy(q["local"]), truthy(q.remote), truthy(q.only_media)
  local picked = {}
  for _, s in ipairs(statuses(tags, math.floor(synth.now("mastodon")))) do
    local ok = not only_media and (not only_local or s.sandbox_local) and (not only_remote or not s.sandbox_local)
      and not has_tag(s, none)
    for _, t in ipairs(all) do ok = ok and has_tag(s, { t }) end
    if ok then picked[#picked + 1] = s end
  end
  return paged(req, prefix, "/api/v1/timelines/tag/" .. http.escape(tag), picked, headers)
end

-- paged(...) -> 200, the page of statuses (newest first) the query's limit,
-- max_id, since_id and min_id pick, with its Link header
paged = function(req, prefix, path, list, headers)
  local q = req.query
  local limit = math.tointeger(tonumber(type(q.limit) == "table" and q.limit[1] or q.limit)) or 20
  limit = math.max(1, math.min(limit, 40))
  local max_id, since_id, min_id = id_param(q.max_id), id_param(q.since_id), id_param(q.min_id)
  local picked = {}
  for _, s in ipairs(list) do
    local id = math.tointeger(s.id)
    if (not max_id or id < max_id) and (not since_id or id > since_id) and (not min_id or id > min_id) then
      picked[#picked + 1] = s
    end
  end
  local page = {}
  if min_id then -- the statuses just after min_id, still sent newest first
    for i = math.max(1, #picked - limit + 1), #picked do page[#page + 1] = picked[i] end
  else
    for i = 1, math.min(limit, #picked) do page[i] = picked[i] end
  end
  for _, s in ipairs(page) do s.sandbox_tags, s.sandbox_local = nil, nil end
  if #page > 0 then headers.Link = link_header(req, prefix, path, limit, page) end
  return 200, json.array(page), headers
end

-- ---- accounts ------------------------------------------------------------------

-- acct "user" or "user@host" -> the ACCOUNTS-shaped entry {user, host} | nil
local function parse_acct(acct)
  if type(acct) ~= "string" then return nil end
  local user, host = acct:lower():match("^@?([%w_]+)@([%w%-%.]+%.%a+)$")
  if not user then user = acct:lower():match("^@?([%w_]+)$") end
  if not user then return nil end
  local only = store.knob("mastodon", "accounts")
  if type(only) == "table" then
    local found = false
    for _, a in ipairs(only) do found = found or tostring(a):lower() == (host and (user .. "@" .. host) or user) end
    if not found then return nil end
  end
  return { user, host }
end

local function lookup(req, headers)
  local entry = parse_acct(type(req.query.acct) == "table" and req.query.acct[1] or req.query.acct)
  if not entry then return err(404, "Record not found", headers) end
  local acc = account(entry, store.knob("mastodon", "domain", "sandbox.social"))
  -- the id is a hash: remember whose it is, for its statuses
  store.call("HSET", store.key("mastodon", "accounts"), acc.id, json.encode(entry))
  return 200, acc, headers
end

-- Every ACCOUNT_POST_EVERY * post_interval seconds, the account posts once.
local ACCOUNT_POST_EVERY = 2

local function account_statuses(req, headers, prefix)
  local raw = store.call("HGET", store.key("mastodon", "accounts"), req.params.id)
  if raw == mc.null then return err(404, "Record not found", headers) end
  local entry = json.decode(raw)
  local seed = tostring(store.knob("mastodon", "seed", "sandbox"))
  local domain = store.knob("mastodon", "domain", "sandbox.social")
  local every = tonumber(store.knob("mastodon", "post_interval", 1800)) * ACCOUNT_POST_EVERY
  local now = math.floor(synth.now("mastodon"))
  local from = now - tonumber(store.knob("mastodon", "history_days", 7)) * DAY
  local who = table.concat(entry, "@")
  local list = {}
  for _, t in ipairs(synth.instants("mastodon|" .. seed .. "|acct|" .. who, every, from, now)) do
    local tag = synth.pick(EXTRA_TAGS, who .. "|" .. t, "tag")
    list[#list + 1] = status(seed, tag, t, domain, entry)
  end
  table.sort(list, function(a, b) return math.tointeger(a.id) > math.tointeger(b.id) end)
  return paged(req, prefix, "/api/v1/accounts/" .. req.params.id .. "/statuses", list, headers)
end

-- guard: the token (when required or given), then the rate limit
local function guard(req)
  local token = (req.headers["authorization"] or ""):match("^Bearer%s+(%S+)$")
  local pinned = store.knob("mastodon", "access_token")
  if token and pinned and token ~= pinned then return err(401, "The access token is invalid") end
  if not token and store.knob("mastodon", "require_token", false) then
    return err(401, "The access token is invalid")
  end
  local limit = tonumber(store.knob("mastodon", "rate_limit", 300))
  local who = token and ("token:" .. token) or ("ip:" .. tostring(req.ip))
  local window = tonumber(store.knob("mastodon", "rate_window", 300))
  local ok, remaining, reset = ratelimit.spend("mastodon", who, limit, window)
  local headers = { ["Content-Type"] = "application/json; charset=utf-8", ["X-RateLimit-Limit"] = limit,
    ["X-RateLimit-Remaining"] = remaining,
    ["X-RateLimit-Reset"] = os.date("!%Y-%m-%dT%H:%M:%S.000000Z", math.floor(reset)) }
  if not ok then return err(429, "Too many requests", headers) end
  return nil, headers
end

function _M.mount(app, prefix)
  local function route(path, handler)
    app:get(prefix .. path, faults.wrap("mastodon", function(req)
      local status_code, body, headers = guard(req)
      if status_code then return status_code, body, headers end
      return handler(req, body, prefix)
    end, fault))
  end
  route("/api/v1/timelines/tag/:hashtag", tag_timeline)
  route("/api/v1/accounts/lookup", lookup)
  route("/api/v1/accounts/:id/statuses", account_statuses)
end

return _M
