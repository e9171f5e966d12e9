-- bench/onboarding.lua N THREADS LATENCY: onboards N sandbox orgs at once through
-- the real web, worker and sandbox processes (spec/support/stack.lua) and prints
-- orgs onboarded per minute and the time per org. Run by bench/onboarding.
local host = require "mc.host"
package.path = host.root .. "/spec/?.lua;" .. host.root .. "/?.lua;" .. package.path
local stack = require "support.stack"
local orgs = require "sandbox.orgs"

local CALLS_PER_ORG = 20 -- Heroku, Connect, Salesforce and SendGrid calls onboarding one org
local n, threads, latency = tonumber(arg[1]) or 200, arg[2] or "10", tonumber(arg[3]) or 0.05
local slow = { latency = latency }
local s = stack.start({ name = "bench_onboarding", app_db = 8, sandbox_db = 0,
  knobs = { heroku = slow, connect = slow, salesforce = slow, sendgrid = slow },
  env = { WORKER_CONCURRENCY = threads, LOG_LEVEL = "warn", WEB_THREADS = "4",
          ONBOARDING_POLL_MIN = "0.5", ONBOARDING_POLL_MAX = "5", WORKER_POLL_INTERVAL = "0.5" },
  sandbox_env = { WEB_THREADS = "32" } })
local ok, err = pcall(function()
  local t0 = host.now()
  for i = 1, n do
    local o = orgs.synthetic(1000 + i)
    local res = s:post_install({ org_id = o.org_id, org_name = o.name, admin_email = o.users[1].username })
    assert(res.status == 202, res.body)
  end
  local posted = host.now() - t0
  -- finish time per org: when its `active` transition was recorded
  local pending = n
  local deadline = host.now() + 1800
  while pending > 0 and host.now() < deadline do
    host.sleep(0.5)
    local rows = assert(s.pg:query([[SELECT count(*) FILTER (WHERE state = 'active') AS active,
      count(*) FILTER (WHERE state = 'failed') AS failed FROM organizations]]))[1]
    if rows.failed > 0 then error(rows.failed .. " orgs failed") end
    pending = n - rows.active
  end
  if pending > 0 then error(pending .. " orgs not active after 30 minutes") end
  local rows = assert(s.pg:query([[SELECT o.org_id, extract(epoch FROM e.created_at - o.created_at)::float8 AS secs,
    extract(epoch FROM e.created_at)::float8 AS done_at, extract(epoch FROM o.created_at)::float8 AS began_at
    FROM organizations o JOIN onboarding_events e ON e.org_id = o.org_id AND e.to_state = 'active' ORDER BY secs]]))
  local first, last = math.huge, 0
  for _, r in ipairs(rows) do first = math.min(first, r.began_at); last = math.max(last, r.done_at) end
  local wall = last - first
  local function pct(p) return rows[math.max(1, math.ceil(#rows * p))].secs end
  local floor = 240 -- the original's two fixed 2-minute waits per org
  print(string.format("orgs: %d, worker threads: %s, sandbox latency: %d ms per call", n, threads, latency * 1000))
  print(string.format("callbacks posted in %.1f s", posted))
  print(string.format("all active after %.1f s: %.1f orgs onboarded per minute", wall, n / wall * 60))
  print(string.format("time per org: median %.1f s, p90 %.1f s, max %.1f s", pct(0.5), pct(0.9), rows[#rows].secs))
  print(string.format("original's floor: %d s per org; median ratio %.3f (%.1fx faster)",
    floor, pct(0.5) / floor, floor / pct(0.5)))
  -- a thread that blocks on each of an org's ~20 sandbox calls onboards at most
  -- 1 / (20 * latency) orgs a second: the ceiling before jobs yielded on the network
  print(string.format("blocking threads' ceiling: %.0f orgs per minute (%s threads, %d calls of %d ms per org)",
    tonumber(threads) / (CALLS_PER_ORG * latency) * 60, threads, CALLS_PER_ORG, latency * 1000))
end)
s:stop()
if not ok then io.stderr:write("bench/onboarding: ", tostring(err), "\n"); os.exit(1) end
