-- bench/redis.lua -- mc.redis against redis-benchmark on the same server, in the
-- same run: round trips per second (one client, one command at a time) and
-- pipelined SETs per second (batches of 100). Run by bench/primitives. Each
-- figure is the best of ROUNDS, ours and the peer's taken in turn, so that a
-- burst of other work on the machine does not decide the ratio.
local redis = require "mc.redis"
local url = require "mc.url"
local host = require "mc.host"

local REDIS_URL = assert(os.getenv("REDIS_URL"), "REDIS_URL is not set")
local ROUNDS = 3
local N_RT = 50000    -- round trips per round
local N_PIPE = 500000 -- pipelined commands per round
local BATCH = 100

local KEY, VALUE = "mc:bench:key", "xxx" -- redis-benchmark's default value is 3 bytes

-- redis-benchmark with args -> {PING_MBULK = rate, SET = rate, ...}
local function peer(args)
  local u = assert(url.parse(REDIS_URL))
  local cmd = string.format("redis-benchmark -h %s -p %d %s --dbnum %d -q -c 1 %s 2>/dev/null",
    u.host, u.port or 6379, u.password and ("-a '" .. u.password .. "'") or "",
    tonumber((u.path or ""):match("^/(%d+)")) or 0, args)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local rates = {}
  -- "PING_MBULK: 51813.47 requests per second, p50=..." (after \r-overwritten progress)
  for name, rate in out:gmatch("([%w_]+): ([%d.]+) requests per second") do
    rates[name] = tonumber(rate)
  end
  return rates
end

local function rate(n, fn)
  local t0 = host.now()
  fn()
  return n / (host.now() - t0)
end

local r = assert(redis.connect(REDIS_URL))

local function ping()
  for _ = 1, N_RT do assert(r:call("PING")) end
end

local function set_get()
  for _ = 1, N_RT // 2 do
    assert(r:call("SET", KEY, VALUE))
    assert(r:call("GET", KEY))
  end
end

local function fill(p)
  for _ = 1, BATCH do p:call("SET", KEY, VALUE) end
end

local function pipelined()
  for _ = 1, N_PIPE // BATCH do assert(r:pipeline(fill)) end
end

local cases = {
  { "PING round trips", function() return rate(N_RT, ping) end,
    function() return peer("-n " .. N_RT .. " -t ping").PING_MBULK end },
  { "SET+GET round trips", function() return rate(N_RT, set_get) end,
    function()
      local t = peer("-n " .. N_RT .. " -t set,get")
      return 2 / (1 / t.SET + 1 / t.GET)
    end },
  { "pipelined SET, batches of " .. BATCH, function() return rate(N_PIPE, pipelined) end,
    function() return peer("-n " .. N_PIPE .. " -P " .. BATCH .. " -t set").SET end },
}

ping() -- warm up: connection, allocator, server
for _, case in ipairs(cases) do
  local name, ours_fn, peer_fn = case[1], case[2], case[3]
  local ours, theirs = 0, 0
  for _ = 1, ROUNDS do
    ours = math.max(ours, ours_fn())
    local peer_rate = assert(peer_fn(), "redis-benchmark gave no figure")
    theirs = math.max(theirs, peer_rate)
  end
  print(string.format("redis %-32s ours %9.0f/s   redis-benchmark %9.0f/s   ratio %.2f",
    name, ours, theirs, ours / theirs))
end

assert(r:call("DEL", KEY))
r:close()
