-- bench/onboarding.lua N THREADS LATENCIES: onboards N sandbox orgs at once
-- through the real web, worker and sandbox processes (spec/support/stack.lua) and
-- prints orgs onboarded per minute, the time per org, and where the core-seconds
-- went. LATENCIES is one latency in seconds per sandbox call, or several ("0.05
-- 0.2 0.5": a sweep); ROUNDS runs of each, the latencies taking turns, then min /
-- median / max over the rounds. Run by bench/onboarding, which documents the knobs.
local host = require "mc.host"
package.path = host.root .. "/spec/?.lua;" .. host.root .. "/?.lua;" .. package.path
local stack = require "support.stack"
local orgs = require "sandbox.orgs"
local cpu = require "bench.onboarding_cpu"
local file = require "mc.file"
local redis = require "mc.redis"
local json = require "mc.json"

local CALLS_PER_ORG = 20 -- Heroku, Connect, Salesforce and SendGrid calls onboarding one org
local FLOOR = 240 -- the original's two fixed 2-minute waits per org

local function usage(msg)
  io.stderr:write("bench/onboarding: ", msg, "\n")
  os.exit(2)
end

local n, threads = tonumber(arg[1] or "200"), tonumber(arg[2] or "10")
if not n or n < 1 or n ~= math.floor(n) then usage("orgs must be a whole number >= 1: " .. tostring(arg[1])) end
if not threads or threads < 1 then usage("threads must be a number >= 1: " .. tostring(arg[2])) end
local latencies = {}
for v in (arg[3] or "0.05"):gmatch("%S+") do
  local l = tonumber(v)
  if not l or l < 0 or l > 10 then usage("a latency is seconds per call, 0 to 10: " .. v) end
  latencies[#latencies + 1] = l
end
if #latencies == 0 then usage("no latency given") end
local function env_number(name, default)
  local v = os.getenv(name)
  if not v or v == "" then return default end
  return tonumber(v) or usage(name .. " must be a number: " .. v)
end
local rounds = env_number("ROUNDS", 3)
local deadline = env_number("DEADLINE", 300 + n * 0.5) -- seconds a run may take, posting included
local stall = env_number("STALL", 90) -- seconds without one org changing state: give up
if rounds < 1 or rounds ~= math.floor(rounds) then usage("ROUNDS must be a whole number >= 1") end
if deadline <= 0 or stall <= 0 then usage("DEADLINE and STALL must be seconds > 0") end
local VAR = assert(os.getenv("MC_VAR"), "MC_VAR is not set (run bench/onboarding)")

local function first_line(path)
  local text = file.read(path)
  return text and text:match("^[^\n]*")
end

-- the bench's own Postgres and Redis, as tools/services started them
local function services()
  local pg_dir = assert(first_line(VAR .. "/services/pg.dir"), "no " .. VAR .. "/services/pg.dir")
  return { postmaster = assert(first_line(pg_dir .. "/data/postmaster.pid")),
           pg_port = assert(first_line(VAR .. "/services/pg.port")),
           redis = assert(first_line(VAR .. "/services/redis.pid")) }
end

local function percentile(sorted, p)
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  if #s == 0 then return nil end
  if #s % 2 == 1 then return s[(#s + 1) / 2] end
  return (s[#s / 2] + s[#s / 2 + 1]) / 2
end

local function spread(list, fmt)
  if #list == 0 then return "none" end
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(list) do lo, hi = math.min(lo, v), math.max(hi, v) end
  return string.format(fmt .. " / " .. fmt .. " / " .. fmt, lo, median(list), hi)
end

-- states(pg) -> {[state] = count}, events so far (progress: any move is one)
local function states(pg)
  local by = {}
  for _, r in ipairs(assert(pg:query("SELECT state, count(*) AS n FROM organizations GROUP BY state"))) do
    by[r.state] = r.n
  end
  local ev = assert(pg:query("SELECT coalesce(max(id), 0) AS id FROM onboarding_events"))[1].id
  return by, ev
end

local function stuck_text(by)
  local parts = {}
  for state, count in pairs(by) do
    if state ~= "active" then parts[#parts + 1] = { state, count } end
  end
  table.sort(parts, function(a, b) return a[2] > b[2] end)
  for i, p in ipairs(parts) do parts[i] = p[1] .. ": " .. p[2] end
  return table.concat(parts, ", ")
end

-- breakdown(used) -> one line per group: core-seconds per org, by process
local function breakdown(used, orgs_done)
  local out, total = {}, 0
  for _, g in ipairs(cpu.GROUPS) do
    local sum, parts = 0, {}
    for _, k in ipairs(g[2]) do
      local v = (used[k] or 0) / orgs_done
      sum = sum + v
      if v >= 0.0005 then parts[#parts + 1] = string.format("%s %.3f", k, v) end
    end
    total = total + sum
    out[#out + 1] = string.format("  %-9s %.3f  (%s)", g[1], sum, table.concat(parts, ", "))
  end
  local machine = used.machine / orgs_done
  out[#out + 1] = string.format("  %-9s %.3f  (machine busy %.3f, of which %.3f in no process above: other "
    .. "sessions, short-lived processes, the kernel's interrupts)", "total", total, machine, machine - total)
  return out
end

-- The sandbox's Heroku spends a rate limit as Heroku does (a bucket of 4,500
-- calls a token, refilled 75 a minute); a 2,000-org run would empty it. The
-- bench lifts it, stops the refill, and counts the calls the bucket lost.
local HEROKU_LIMIT, HEROKU_REAL_LIMIT = 1e9, 4500
local HEROKU_BUCKET = "sandbox:heroku:ratebucket:spec-heroku-token"

-- The sandbox's handlers hold their thread through an injected latency (its
-- stand-ins share a Redis connection per thread, so they do not yield): n threads
-- answer at most n / latency calls a second. Enough of them that the stand-ins are
-- not what a slow API's run measures: 32 at 50 ms, more as the latency grows
-- (SANDBOX_THREADS sets it).
local function sandbox_threads(latency)
  local set = tonumber(os.getenv("SANDBOX_THREADS") or "")
  if set then return math.floor(set) end
  return math.min(256, math.max(32, math.ceil(32 * latency / 0.05)))
end

local function run(latency, round)
  local slow = { latency = latency }
  local s = stack.start({ name = "bench_onboarding", app_db = 8, sandbox_db = 0,
    knobs = { heroku = { latency = latency, rate_limit = HEROKU_LIMIT, rate_refill = 0 },
              connect = slow, salesforce = slow, sendgrid = slow },
    env = { WORKER_CONCURRENCY = tostring(threads), LOG_LEVEL = "warn", WEB_THREADS = "4",
            ONBOARDING_POLL_MIN = "0.5", ONBOARDING_POLL_MAX = "5", WORKER_POLL_INTERVAL = "0.5" },
    sandbox_env = { WEB_THREADS = tostring(sandbox_threads(latency)) } })
  local ok, res = pcall(function()
    local svc = services()
    local sb_redis <close> = assert(redis.connect((os.getenv("REDIS_URL"):gsub("/%d*$", "") .. "/0")))
    local function admin() -- the simulated admin's process, once the first mail started it
      local pid = sb_redis:call("GET", "sandbox:sendgrid:admin:reader")
      return type(pid) == "string" and pid:match("^%d+$") and pid or nil
    end
    local meter = cpu.new({ web = s.web.pid, worker = s.worker.pid, sandbox = s.sandbox.pid, redis = svc.redis,
                            postmaster = svc.postmaster, pg_port = svc.pg_port, pg = s.pg, admin = admin })
    local c0 = meter:sample()
    local t0 = host.now()
    for i = 1, n do
      local o = orgs.synthetic(1000 + i)
      local r = s:post_install({ org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username })
      assert(r.status == 202, r.body)
    end
    local r = { latency = latency, posted = host.now() - t0 }
    -- until every org is active or failed, the deadline passes, or nothing moves
    local by, ev
    local last_ev, moved = -1, host.now()
    while true do
      by, ev = states(s.pg)
      if (by.active or 0) + (by.failed or 0) >= n then break end
      if ev ~= last_ev then last_ev, moved = ev, host.now() end
      if host.now() - t0 > deadline then r.gave_up = string.format("after the %.0f s deadline", deadline); break end
      if host.now() - moved > stall then r.gave_up = string.format("after %.0f s without a move", stall); break end
      host.sleep(0.5)
    end
    r.cpu = cpu.diff(c0, meter:sample())
    r.active = by.active or 0
    local left = tonumber(sb_redis:call("HGET", HEROKU_BUCKET, "tokens"))
    r.heroku_calls = left and HEROKU_LIMIT - left or 0
    if r.active < n then
      r.stuck = string.format("%d orgs not active after %.0f s (%s); by state: %s",
        n - r.active, host.now() - t0, r.gave_up or "all ended", stuck_text(by))
      -- why: the commonest errors of the orgs not active (a failure's, or a retry's)
      for _, e in ipairs(assert(s.pg:query([[SELECT coalesce(failed_step, state) AS step,
          left(last_error, 160) AS err, count(*) AS n FROM organizations
          WHERE state <> 'active' AND last_error IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 3]]))) do
        r.stuck = r.stuck .. string.format("\n  %d in %s: %s", e.n, e.step, e.err)
      end
      -- and the simulated admin's visits that did not end in a page (it gives up after 30 s)
      local failed = {}
      for _, raw in ipairs(sb_redis:call("LRANGE", "sandbox:sendgrid:admin", 0, -1)) do
        local v = json.decode(raw)
        local why = v and (v.error ~= mc.null and v.error or (v.status ~= 200 and ("status " .. tostring(v.status))))
        if why then failed[why] = (failed[why] or 0) + 1 end
      end
      for why, count in pairs(failed) do
        r.stuck = r.stuck .. string.format("\n  the simulated admin's visits that failed: %d (%s)", count, why)
      end
    end
    -- finish time per org: when its `active` transition was recorded
    local rows = assert(s.pg:query([[SELECT extract(epoch FROM e.created_at - o.created_at)::float8 AS secs,
      extract(epoch FROM e.created_at)::float8 AS done_at, extract(epoch FROM o.created_at)::float8 AS began_at
      FROM organizations o JOIN onboarding_events e ON e.org_id = o.org_id AND e.to_state = 'active'
      ORDER BY secs]]))
    if #rows == 0 then return r end
    local first, last, secs = math.huge, 0, {}
    for i, row in ipairs(rows) do
      first, last, secs[i] = math.min(first, row.began_at), math.max(last, row.done_at), row.secs
    end
    r.wall = last - first
    r.rate = #rows / r.wall * 60
    r.median, r.p90, r.max = median(secs), percentile(secs, 0.9), secs[#secs]
    return r
  end)
  s:stop()
  if not ok then error(res, 0) end
  local r = res
  print(string.format("round %d, %d ms per call: callbacks posted in %.1f s", round, latency * 1000, r.posted))
  if r.stuck then print("  " .. r.stuck) end
  if r.rate then
    print(string.format("  %d active after %.1f s: %.1f orgs onboarded per minute", r.active, r.wall, r.rate))
    print(string.format("  time per org: median %.1f s, p90 %.1f s, max %.1f s", r.median, r.p90, r.max))
  end
  print(string.format("  Heroku Platform API calls: %.1f per org (%d); at its limit of %d an hour a token, "
    .. "%.0f orgs an hour", r.heroku_calls / n, r.heroku_calls, HEROKU_REAL_LIMIT,
    r.heroku_calls > 0 and HEROKU_REAL_LIMIT / (r.heroku_calls / n) or 0))
  if r.active > 0 then
    print(string.format("  core-seconds per org (%d orgs):", r.active))
    for _, l in ipairs(breakdown(r.cpu, r.active)) do print(l) end
  end
  io.stdout:flush()
  return r
end

print(string.format("bench/onboarding: %d orgs, %d worker threads, %d round(s) of %s s per call; "
  .. "deadline %.0f s a run, %.0f s without a move", n, threads, rounds, table.concat(latencies, ", "),
  deadline, stall))
local results = {}
for round = 1, rounds do
  for _, l in ipairs(latencies) do
    results[l] = results[l] or {}
    table.insert(results[l], run(l, round))
  end
end

print("")
print(string.format("summary: %d orgs, %d worker threads, %d round(s); min / median / max", n, threads, rounds))
local failed = false
for _, l in ipairs(latencies) do
  local rates, medians, incomplete, used, done = {}, {}, 0, {}, 0
  for _, r in ipairs(results[l]) do
    if r.stuck then incomplete = incomplete + 1; failed = true end
    if r.rate then rates[#rates + 1], medians[#medians + 1] = r.rate, r.median end
    for k, v in pairs(r.cpu) do
      if type(v) == "number" then used[k] = (used[k] or 0) + v end
    end
    done = done + r.active
  end
  print(string.format("%d ms per call:", l * 1000))
  if incomplete > 0 then
    print(string.format("  %d of %d rounds left orgs not active (see above)", incomplete, #results[l]))
  end
  print("  orgs onboarded per minute: " .. spread(rates, "%.1f"))
  print("  median time per org, s:    " .. spread(medians, "%.1f"))
  local med = median(medians)
  if med then
    print(string.format("  against the original's %d s floor: %.3f (%.1fx faster)", FLOOR, med / FLOOR, FLOOR / med))
  end
  -- a thread that blocks on each of an org's ~20 sandbox calls onboards at most
  -- 1 / (20 * latency) orgs a second: the ceiling before jobs yielded on the network
  if l > 0 then
    print(string.format("  blocking threads' ceiling: %.0f orgs per minute (%d threads, %d calls of %d ms per org)",
      threads / (CALLS_PER_ORG * l) * 60, threads, CALLS_PER_ORG, l * 1000))
    local sb = sandbox_threads(l)
    print(string.format("  the sandbox's ceiling: %.0f orgs per minute (%d threads, each holding a call)",
      sb / (CALLS_PER_ORG * l) * 60, sb))
  end
  if done > 0 then
    print(string.format("  core-seconds per org, all rounds (%d orgs):", done))
    for _, line in ipairs(breakdown(used, done)) do print(line) end
  end
end
if failed then os.exit(1) end
