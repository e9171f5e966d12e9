-- onboarding.workflow: moves one org through its states. advance(org_id) is
-- the whole engine, run by the onboarding.advance job:
--   1. lock the org's row (FOR UPDATE SKIP LOCKED: a second runner walks away);
--   2. run the step for its state (onboarding/steps.lua);
--   3. in the same transaction, record the outcome (new state, or a wait, or a
--      retry with backoff, or `failed`) and an onboarding_events row;
--   4. after commit, enqueue the next advance (now, or when the wait is over).
-- A crash anywhere before the commit leaves the row as it was: the job runs
-- again (reliable fetch) and the idempotent step finds its own earlier work.
-- A crash after the commit and before the enqueue is caught by the sweep
-- (jobs/onboarding/sweep.lua), which wakes orgs whose step is overdue.
local env = require "mc.env"
local jobs = require "mc.jobs"
local log = require "mc.log"
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local steps = require "onboarding.steps"
local hooks = require "onboarding.hooks"

local _M = {}

local JOB = "onboarding.advance"

local function config()
  return {
    poll_min = env.number("ONBOARDING_POLL_MIN", 2, { min = 0.05 }),
    poll_max = env.number("ONBOARDING_POLL_MAX", 60, { min = 0.05 }),
    retry_max = env.number("ONBOARDING_RETRY_MAX", 300, { min = 0.05 }),
    attempts = env.int("ONBOARDING_MAX_ATTEMPTS", 12, { min = 1 }),
    wait_limit = env.number("ONBOARDING_WAIT_LIMIT", 6 * 3600, { min = 1 }),
  }
end

-- Exponential, capped, with jitter so that 200 orgs waiting on the same thing
-- don't poll in lockstep.
function _M.backoff(attempts, min, max)
  local base = math.min(max, min * 1.6 ^ math.min(attempts, 40))
  return base * (0.8 + 0.4 * math.random())
end

function _M.enqueue(org_id, delay)
  local opts = delay and delay > 0 and { ["in"] = delay } or nil
  return jobs.enqueue(JOB, { org_id }, opts)
end

-- announce(org, from, to): after a transition is committed, the log line and
-- the tenant's on_state hook (whose failure is only logged: the move stands).
function _M.announce(org, from, to)
  log.info("onboarding moved", { org_id = org.org_id, from = from, to = to })
  local ok, err = hooks.run(orgs.public(org), "on_state", from, to)
  if not ok then log.warn("tenant hook on_state failed", { org_id = org.org_id, err = err }) end
end

-- Runs the step protected: a step that raises (a bug) fails the attempt as retryable.
local function run_step(org, ctx)
  local step = steps[org.state]
  if not step then return nil, "no step for state " .. tostring(org.state), false end
  local ok, outcome, err, retry = xpcall(step, debug.traceback, org, ctx)
  if not ok then
    log.error("onboarding step raised", { org_id = org.org_id, state = org.state, err = outcome })
    return nil, (tostring(outcome):match("^[^\n]*")), true
  end
  return outcome, err, retry
end

-- The outcome -> the row's update, the event, and the next run's delay (nil: none).
local function merged_progress(org, changes)
  local p = {}
  for k, v in pairs(org.progress) do p[k] = v end
  for k, v in pairs(changes or {}) do p[k] = v end
  return p
end

-- `attempts` counts the step's runs in this state (the poll backoff);
-- progress.failures counts its consecutive transient failures (the retry
-- budget), so hours of healthy polling never use up the retries.
local function settle(conn, org, outcome, err, retry, cfg)
  local id, from = org.org_id, org.state
  if outcome and outcome.to then
    local fields = outcome.fields
    fields.state, fields.attempts, fields.last_error, fields.progress = outcome.to, 0, mc.null, {}
    local person = states.PERSON[outcome.to] or states.FINAL[outcome.to]
    assert(orgs.update(conn, id, fields, { due = not person and 0 or false, new_state = true }))
    assert(orgs.event(conn, id, from, outcome.to, "transition", outcome.details))
    return not person and 0 or nil, outcome.to
  end
  local attempts = org.attempts + 1
  if outcome and outcome.wait then
    if org.in_state > cfg.wait_limit then
      err, retry = "gave up waiting: " .. outcome.wait, false
    else
      local delay = _M.backoff(attempts - 1, cfg.poll_min, cfg.poll_max)
      local fields = outcome.fields
      fields.attempts = attempts
      fields.progress = merged_progress(org, fields.progress)
      fields.progress.failures = nil
      assert(orgs.update(conn, id, fields, { due = delay }))
      if attempts == 1 then assert(orgs.event(conn, id, from, from, "wait", { reason = outcome.wait })) end
      return delay
    end
  end
  local failures = (tonumber(org.progress.failures) or 0) + 1
  if retry and failures < cfg.attempts then
    local delay = _M.backoff(failures, cfg.poll_min, cfg.retry_max)
    assert(orgs.update(conn, id, { attempts = attempts, last_error = err,
      progress = merged_progress(org, { failures = failures }) }, { due = delay }))
    assert(orgs.event(conn, id, from, from, "retry", { error = err, attempt = failures, retry_in = delay }))
    return delay
  end
  if retry then err = err .. " (gave up after " .. failures .. " attempts)" end
  assert(orgs.update(conn, id, { state = "failed", failed_step = from, last_error = err, attempts = attempts },
    { due = false, new_state = true }))
  assert(orgs.event(conn, id, from, "failed", "failure", { error = err, step = from }))
  return nil, "failed"
end

-- advance(org_id[, opts]) -> what happened ("busy", "idle", "waiting", a new state) | nil, err
-- opts.force: run even if the step is not due yet.
function _M.advance(org_id, opts)
  local conn, cerr = db.conn()
  if not conn then return nil, cerr end
  local cfg = config()
  local delay, result, moved_from, moved
  local ok, err = conn:transaction(function()
    local org, gerr = orgs.get(conn, org_id, "skip")
    if org == nil then error("reading the org: " .. tostring(gerr)) end
    if not org then result = "busy"; return true end -- gone, or another runner holds it
    if states.FINAL[org.state] or states.PERSON[org.state] then result = "idle"; return true end
    if not (opts and opts.force) and org.early then
      result = "idle"; return true
    end
    org.tenant = orgs.public(org)
    local ctx = { conn = conn, save = function(fields) assert(orgs.update(conn, org_id, fields)) end }
    local outcome, serr, retry = run_step(org, ctx)
    delay, result = settle(conn, org, outcome, serr, retry, cfg)
    result = result or (outcome and outcome.wait and "waiting") or (retry and "retrying") or "failed"
    if result ~= "waiting" and result ~= "retrying" then moved_from, moved = org, result end
    return true
  end)
  if not ok then return nil, err end
  if moved then _M.announce(moved_from, moved_from.state, moved) end
  if delay then
    local jid, jerr = _M.enqueue(org_id, delay)
    if not jid then log.error("onboarding: could not enqueue the next step", { org_id = org_id, err = jerr }) end
  end
  return result
end

return _M
