-- sandbox.x: X API v2 recent search (docs/external-apis.md §5.1) over deterministic posts.
--   GET /2/tweets/search/recent   query, max_results 10..100, since_id, until_id,
--       start_time, end_time, next_token (or pagination_token), tweet.fields,
--       expansions (author_id, entities.mentions.username), user.fields
-- Posts exist for every handle a query names (from:, to:, @) and for knob
-- handles: each handle posts every knob post_interval seconds (default 3600) and
-- is mentioned by a fan every knob mention_interval (default 5400), over the last
-- 7 days; text, times and ids follow from knob seed, and ids are snowflakes, so
-- newer posts have larger ids and since_id works. Knob clock_offset moves "now";
-- knob extra_posts adds posts with given text ([{handle, text, ago}]).
-- Bearer token required (401; knob bearer_token pins it; knob forbidden -> 403
-- client-not-enrolled). Each call spends one of the token's knob rate_limit
-- (default 450) per knob rate_window (900 s): x-rate-limit-* headers, 429.
local store = require "sandbox.store"
local faults = require "sandbox.faults"
local ratelimit = require "sandbox.ratelimit"
local synth = require "sandbox.synth"

local _M = {}

local TWEPOCH = 1288834974657
local WEEK = 7 * 86400
local PROBLEM = "https://api.twitter.com/2/problems/"

local TWEET_FIELDS = { "attachments", "author_id", "card_uri", "context_annotations", "conversation_id",
  "created_at", "edit_controls", "edit_history_tweet_ids", "entities", "geo", "id", "in_reply_to_user_id",
  "lang", "note_tweet", "non_public_metrics", "organic_metrics", "possibly_sensitive", "promoted_metrics",
  "public_metrics", "referenced_tweets", "reply_settings", "scopes", "source", "text", "withheld" }
local USER_FIELDS = { "affiliation", "connection_status", "created_at", "description", "entities", "id",
  "location", "most_recent_tweet_id", "name", "pinned_tweet_id", "profile_banner_url", "profile_image_url",
  "protected", "public_metrics", "receives_your_dm", "subscription_type", "url", "username", "verified",
  "verified_type", "withheld" }
local EXPANSIONS = { "attachments.media_keys", "attachments.poll_ids", "author_id", "edit_history_tweet_ids",
  "entities.mentions.username", "geo.place_id", "in_reply_to_user_id", "referenced_tweets.id",
  "referenced_tweets.id.author_id" }
local OPERATORS = { from = true, to = true, lang = true, is = true, has = true, url = true,
  conversation_id = true, retweets_of = true, place = true, context = true, entity = true }

local OWN = { "Shipping %s today, thanks to everyone who helped #salesforce",
  "New post on our blog about %s https://example.com/blog/%d",
  "We are hiring engineers who love %s #heroku", "Customer story: how Acme scaled %s",
  "Maintenance window tonight for %s, status at https://status.example.com",
  "Webinar on %s next week #dreamforce" }
local FAN = { "@%s loving the new %s feature!", "@%s any news on %s? asking for my team",
  "@%s your support on %s was excellent #cx", "@%s %s is down for us, please help",
  "Just switched to @%s for %s https://example.com/review/%d" }
local TOPICS = { "Heroku Connect", "data sync", "the mobile app", "Einstein", "our API", "the dashboard" }
local FANS = { "dev_dana", "ops_omar", "cto_chen", "pm_priya", "qa_quinn", "sre_sam", "ux_uma" }

local function problem(status, title, detail, extra, headers)
  local body = { title = title, detail = detail, type = "about:blank", status = status }
  for k, v in pairs(extra or {}) do body[k] = v end
  local h = { ["Content-Type"] = "application/problem+json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return status, body, h
end

local function fault(status)
  local title = status == 503 and "Service Unavailable" or "Internal Server Error"
  return problem(status, title, title)
end

local function invalid(message, param, value, headers)
  local h = { ["Content-Type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  return 400, { errors = { { parameters = { [param] = { value } }, message = message } },
    title = "Invalid Request", detail = "One or more parameters to your request was invalid.",
    type = PROBLEM .. "invalid-request" }, h
end

-- ---- the query language --------------------------------------------------------

local function tokenize(q)
  local out, i = {}, 1
  while i <= #q do
    local c = q:sub(i, i)
    if c:match("%s") then i = i + 1
    elseif c == "(" or c == ")" then out[#out + 1] = c; i = i + 1
    else
      local neg = ""
      if c == "-" then neg = "-"; i = i + 1; c = q:sub(i, i) end
      if c == '"' then
        local j = q:find('"', i + 1, true)
        if not j then return nil, "unterminated quote" end
        out[#out + 1] = { neg = neg == "-", phrase = q:sub(i + 1, j - 1) }
        i = j + 1
      elseif c == "(" then
        out[#out + 1] = "-("; i = i + 1
      else
        local word = q:match("^[^%s%(%)]+", i)
        if not word then return nil, "dangling '-'" end
        out[#out + 1] = { neg = neg == "-", word = word }
        i = i + #word
      end
    end
  end
  return out
end

local function atom(tok)
  if tok.phrase then return { kind = "text", value = tok.phrase:lower() } end
  local w = tok.word
  local op, value = w:match("^([%a_]+):(.+)$")
  if op and not w:match("^https?:") then
    if not OPERATORS[op] then return nil, "Reference to invalid operator '" .. op .. "'." end
    return { kind = op, value = value:lower(), raw = value }
  end
  if w:sub(1, 1) == "@" then return { kind = "mention", value = w:sub(2):lower(), raw = w:sub(2) } end
  if w:sub(1, 1) == "#" then return { kind = "tag", value = w:sub(2):lower() } end
  return { kind = "text", value = w:lower() }
end

-- parse(tokens) -> tree of {op = "or"|"and"|"not", ...} and predicates
local function parse(tokens)
  local pos = 1
  local parse_or
  local function parse_and()
    local terms = {}
    while true do
      local t = tokens[pos]
      if t == nil or t == ")" or (type(t) == "table" and t.word == "OR" and not t.neg) then break end
      pos = pos + 1
      local node, err
      if t == "(" or t == "-(" then
        node, err = parse_or()
        if not node then return nil, err end
        if tokens[pos] ~= ")" then return nil, "missing ')'" end
        pos = pos + 1
        if t == "-(" then node = { op = "not", node } end
      else
        node, err = atom(t)
        if not node then return nil, err end
        if t.neg then node = { op = "not", node } end
      end
      terms[#terms + 1] = node
    end
    if #terms == 0 then return nil, "empty expression" end
    return { op = "and", table.unpack(terms) }
  end
  function parse_or()
    local alts = {}
    repeat
      local node, err = parse_and()
      if not node then return nil, err end
      alts[#alts + 1] = node
      local t = tokens[pos]
      local more = type(t) == "table" and t.word == "OR"
      if more then pos = pos + 1 end
    until not more
    return { op = "or", table.unpack(alts) }
  end
  local tree, err = parse_or()
  if not tree then return nil, err end
  if pos <= #tokens then return nil, "unexpected ')'" end
  return tree
end

local function has(list, v)
  for _, x in ipairs(list) do if x:lower() == v then return true end end
  return false
end

local function matches(node, post)
  if node.op == "or" then
    for _, n in ipairs(node) do if matches(n, post) then return true end end
    return false
  elseif node.op == "and" then
    for _, n in ipairs(node) do if not matches(n, post) then return false end end
    return true
  elseif node.op == "not" then
    return not matches(node[1], post)
  end
  local k, v = node.kind, node.value
  if k == "from" then return post.username:lower() == v
  elseif k == "mention" then return has(post.mentions, v)
  elseif k == "tag" then return has(post.tags, v)
  elseif k == "lang" then return post.lang == v
  elseif k == "url" then return #post.urls > 0 and post.text:lower():find(v, 1, true) ~= nil
  elseif k == "has" then
    if v == "links" then return #post.urls > 0 end
    if v == "mentions" then return #post.mentions > 0 end
    if v == "hashtags" then return #post.tags > 0 end
    return false
  elseif k == "conversation_id" then return post.id == v
  elseif k == "text" then return post.text:lower():find(v, 1, true) ~= nil end
  return false -- to:, is:retweet, is:reply, ...: the sandbox has no such posts
end

local function handles(node, out)
  if node.op then
    for _, n in ipairs(node) do handles(n, out) end
  elseif node.kind == "from" or node.kind == "to" or node.kind == "mention" then
    out[node.value] = out[node.value] or node.raw -- the first spelling names the account
  end
  return out
end

-- ---- the posts ---------------------------------------------------------------------

local function user_id(username)
  return tostring(1000000000 + synth.hash("user|" .. username:lower()))
end

local function make_post(seed, handle, t, own)
  local key = table.concat({ seed, handle:lower(), t, own and "own" or "fan" }, "|")
  local h = synth.hash(key)
  local topic = synth.pick(TOPICS, key, "topic")
  local author, text = handle
  if own then
    text = string.format(synth.pick(OWN, key), topic, h % 10000)
  else
    author = synth.pick(FANS, key, "fan")
    text = string.format(synth.pick(FAN, key), handle, topic, h % 10000)
  end
  local ms = t * 1000 + h % 1000
  local post = {
    id = tostring(((ms - TWEPOCH) << 22) | (h & 0x3fffff)), text = text, username = author,
    created_at = os.date("!%Y-%m-%dT%H:%M:%S", t) .. string.format(".%03dZ", h % 1000), time = t,
    lang = synth.pick({ "en", "en", "en", "en", "es", "fr" }, key, "lang"),
    mentions = {}, tags = {}, urls = {},
    metrics = { retweet_count = h % 7, reply_count = (h >> 3) % 5, like_count = (h >> 6) % 60,
                quote_count = (h >> 12) % 3, bookmark_count = (h >> 14) % 4, impression_count = (h >> 8) % 2000 },
  }
  for m in text:gmatch("@([%w_]+)") do post.mentions[#post.mentions + 1] = m end
  for m in text:gmatch("#([%w_]+)") do post.tags[#post.tags + 1] = m end
  for m in text:gmatch("https?://%S+") do post.urls[#post.urls + 1] = m end
  return post
end

-- universe(names, now) -> every post of the named handles, newest first, deduplicated
local function universe(names, now)
  local seed = tostring(store.knob("x", "seed", "sandbox"))
  local own_every = tonumber(store.knob("x", "post_interval", 3600))
  local fan_every = tonumber(store.knob("x", "mention_interval", 5400))
  for _, h in ipairs(type(store.knob("x", "handles")) == "table" and store.knob("x", "handles") or {}) do
    names[tostring(h):lower()] = names[tostring(h):lower()] or tostring(h)
  end
  local posts, seen = {}, {}
  for _, handle in pairs(names) do
    for _, own in ipairs({ true, false }) do
      local feed = table.concat({ "x", seed, handle:lower(), own and "own" or "fan" }, "|")
      for _, t in ipairs(synth.instants(feed, own and own_every or fan_every, now - WEEK, now)) do
        local p = make_post(seed, handle, t, own)
        if not seen[p.id] then seen[p.id] = true; posts[#posts + 1] = p end
      end
    end
  end
  -- knob extra_posts: [{handle, text, ago}]: a post by handle, `ago` seconds old
  -- (default 60), with exactly that text (for text no template makes)
  local extra = store.knob("x", "extra_posts")
  for i, e in ipairs(type(extra) == "table" and extra or {}) do
    if type(e) == "table" and type(e.handle) == "string" and names[e.handle:lower()] and type(e.text) == "string" then
      local t = math.floor(now - (tonumber(e.ago) or 60))
      local p = make_post(seed, e.handle, t, true)
      p.id = tostring(((t * 1000 - TWEPOCH) << 22) | (synth.hash("extra|" .. i .. "|" .. e.text) & 0x3fffff))
      p.text, p.mentions, p.tags, p.urls = e.text, {}, {}, {}
      if not seen[p.id] then seen[p.id] = true; posts[#posts + 1] = p end
    end
  end
  table.sort(posts, function(a, b) return math.tointeger(a.id) > math.tointeger(b.id) end)
  return posts
end

-- ---- the response --------------------------------------------------------------

local function list_param(query, name, allowed, headers)
  local raw = query[name]
  if type(raw) == "table" then raw = table.concat(raw, ",") end
  local set = {}
  if raw == nil or raw == "" then return set end
  local ok = {}
  for _, a in ipairs(allowed) do ok[a] = true end
  for v in raw:gmatch("[^,]+") do
    if not ok[v] then
      return nil, invalid(string.format("The `%s` query parameter value [%s] is not one of [%s]",
        name, v, table.concat(allowed, ",")), name, v, headers)
    end
    set[v] = true
  end
  return set
end

local function render_post(p, fields)
  local out = { id = p.id, text = p.text, edit_history_tweet_ids = { p.id } }
  if fields.author_id then out.author_id = user_id(p.username) end
  if fields.created_at then out.created_at = p.created_at end
  if fields.lang then out.lang = p.lang end
  if fields.conversation_id then out.conversation_id = p.id end
  if fields.possibly_sensitive then out.possibly_sensitive = false end
  if fields.reply_settings then out.reply_settings = "everyone" end
  if fields.public_metrics then out.public_metrics = p.metrics end
  if fields.entities then
    local e = {}
    local function spans(list, prefix, key, extra)
      if #list == 0 then return end
      local arr, from = {}, 1
      for _, v in ipairs(list) do
        local s = p.text:find(prefix .. v, from, true)
        from = s + 1
        local item = { start = s - 1, ["end"] = s - 1 + #prefix + #v, [key] = v }
        if extra then extra(item, v) end
        arr[#arr + 1] = item
      end
      e[key == "tag" and "hashtags" or key == "username" and "mentions" or "urls"] = arr
    end
    spans(p.mentions, "@", "username", function(item, v) item.id = user_id(v) end)
    spans(p.tags, "#", "tag")
    spans(p.urls, "", "url", function(item, v) item.expanded_url = v; item.display_url = v:gsub("^https?://", "") end)
    if next(e) then out.entities = e end
  end
  return out
end

local function render_user(username, fields)
  local h = synth.hash("user|" .. username:lower())
  local u = { id = user_id(username), username = username, name = username:gsub("_", " "):gsub("^%l", string.upper) }
  if fields.created_at then u.created_at = os.date("!%Y-%m-%dT%H:%M:%S.000Z", 1262304000 + h % 400000000) end
  if fields.description then u.description = "Sandbox account @" .. username end
  if fields.profile_image_url then
    u.profile_image_url = "https://pbs.twimg.com/profile_images/" .. h .. "/sandbox_normal.jpg"
  end
  if fields.verified then u.verified = false end
  if fields.protected then u.protected = false end
  if fields.public_metrics then
    u.public_metrics = { followers_count = h % 50000, following_count = (h >> 4) % 2000,
                         tweet_count = (h >> 8) % 90000, listed_count = (h >> 2) % 300 }
  end
  return u
end

local function int_param(query, name, headers)
  local v = query[name]
  if v == nil then return nil end
  local n = math.tointeger(tonumber(v))
  if not n or not tostring(v):match("^%d+$") then
    return false, invalid(string.format("The `%s` query parameter value [%s] is not valid", name, v), name, v, headers)
  end
  return n
end

local function iso_param(query, name, headers)
  local v = query[name]
  if v == nil then return nil end
  local y, mo, d, hh, mi, ss = tostring(v):match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)")
  if not y then
    return false, invalid(string.format("Invalid '%s':'%s'.", name, v), name, v, headers)
  end
  local t = os.time({ year = y, month = mo, day = d, hour = hh, min = mi, sec = ss, isdst = false })
  local utc = os.time(os.date("!*t", t)) -- os.time reads local time: undo the zone
  return t + (t - utc)
end

local function search(req, headers)
  local q = req.query
  local now = math.floor(synth.now("x"))
  local query = type(q.query) == "table" and q.query[1] or q.query
  if type(query) ~= "string" or query == "" then
    return invalid("The `query` query parameter can not be empty", "query", "", headers)
  end
  if #query > tonumber(store.knob("x", "max_query_length", 512)) then
    return invalid("The `query` query parameter value is too long", "query", query, headers)
  end
  local tree, terr = tokenize(query)
  if tree then tree, terr = parse(tree) end
  if not tree then
    return invalid("There were errors processing your request: " .. terr, "query", query, headers)
  end
  local max = q.max_results == nil and 10 or math.tointeger(tonumber(q.max_results))
  if not max or max < 10 or max > 100 then
    return invalid(string.format("The `max_results` query parameter value [%s] is not between 10 and 100",
      tostring(q.max_results)), "max_results", tostring(q.max_results), headers)
  end
  local fields, s, b, h = list_param(q, "tweet.fields", TWEET_FIELDS, headers)
  if not fields then return s, b, h end
  local expansions; expansions, s, b, h = list_param(q, "expansions", EXPANSIONS, headers)
  if not expansions then return s, b, h end
  local ufields; ufields, s, b, h = list_param(q, "user.fields", USER_FIELDS, headers)
  if not ufields then return s, b, h end
  local since; since, s, b, h = int_param(q, "since_id", headers)
  if since == false then return s, b, h end
  local until_id; until_id, s, b, h = int_param(q, "until_id", headers)
  if until_id == false then return s, b, h end
  local start_time; start_time, s, b, h = iso_param(q, "start_time", headers)
  if start_time == false then return s, b, h end
  local end_time; end_time, s, b, h = iso_param(q, "end_time", headers)
  if end_time == false then return s, b, h end
  local token = q.next_token or q.pagination_token
  local before
  if token ~= nil then
    before = tostring(token):match("^b(%x+)$") and math.tointeger(tonumber(tostring(token):sub(2), 16))
    if not before then
      return invalid(string.format("The `next_token` query parameter value [%s] is not valid", token),
        "next_token", tostring(token), headers)
    end
  end
  local hits = {}
  local more = false
  for _, p in ipairs(universe(handles(tree, {}), now)) do
    local id = math.tointeger(p.id)
    if (not since or id > since) and (not until_id or id < until_id) and (not before or id < before)
        and (not start_time or p.time >= start_time) and (not end_time or p.time < end_time)
        and matches(tree, p) then
      if #hits == max then more = true; break end
      hits[#hits + 1] = p
    end
  end
  if #hits == 0 then return 200, { meta = { result_count = 0 } }, headers end
  local data, users, seen = {}, {}, {}
  local function include(username)
    local key = username:lower()
    if seen[key] then return end
    seen[key] = true
    users[#users + 1] = render_user(username, ufields)
  end
  for _, p in ipairs(hits) do
    data[#data + 1] = render_post(p, fields)
    if expansions.author_id then include(p.username) end
    if expansions["entities.mentions.username"] then for _, m in ipairs(p.mentions) do include(m) end end
  end
  local body = { data = data, meta = { newest_id = hits[1].id, oldest_id = hits[#hits].id, result_count = #hits } }
  if more then body.meta.next_token = string.format("b%x", math.tointeger(hits[#hits].id)) end
  if #users > 0 then body.includes = { users = users } end
  return 200, body, headers
end

-- guard: the bearer token, then the rate limit -> nil, headers | status, body, headers
local function guard(req)
  local token = (req.headers["authorization"] or ""):match("^Bearer%s+(%S+)$")
  local pinned = store.knob("x", "bearer_token")
  if not token or (pinned and token ~= pinned) then
    return problem(401, "Unauthorized", "Unauthorized")
  end
  if store.knob("x", "forbidden", false) then
    return 403, { title = "Client Forbidden", type = PROBLEM .. "client-forbidden", reason = "client-not-enrolled",
      detail = "When authenticating requests to the Twitter API v2 endpoints, you must use keys and "
        .. "tokens from a Twitter developer App that is attached to a Project. "
        .. "You can create a project via the developer portal.",
      required_enrollment = "Appropriate Level of API Access",
      registration_url = "https://developer.twitter.com/en/docs/projects/overview", client_id = "sandbox" },
      { ["Content-Type"] = "application/problem+json" }
  end
  local limit = tonumber(store.knob("x", "rate_limit", 450))
  local ok, remaining, reset = ratelimit.spend("x", token, limit, tonumber(store.knob("x", "rate_window", 900)))
  local headers = { ["Content-Type"] = "application/json", ["x-rate-limit-limit"] = limit,
                    ["x-rate-limit-remaining"] = remaining, ["x-rate-limit-reset"] = math.floor(reset) }
  if not ok then
    return problem(429, "Too Many Requests", "Too Many Requests", nil, headers)
  end
  return nil, headers
end

function _M.mount(app, prefix)
  app:get(prefix .. "/2/tweets/search/recent", faults.wrap("x", function(req)
    local status, body, headers = guard(req)
    if status then return status, body, headers end
    return search(req, body)
  end, fault))
end

return _M
