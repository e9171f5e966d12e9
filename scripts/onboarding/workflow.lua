-- onboarding.workflow: moves one org through its states. advance(org_id) is
-- the whole engine, run by the onboarding.advance job:
--   1. claim the org: a session advisory lock on its id (pg_try_advisory_lock;
--      a second runner walks away). No transaction and no row lock is held
--      while the step runs, so a slow Salesforce holds nothing an uninstall,
--      a sign-in or an operator waits for;
--   2. run the step for its state (onboarding/steps.lua): HTTP calls, mail;
--   3. settle the outcome in one short transaction: if the org is still in the
--      state the step ran for, record the new state (orgs.transition), a wait,
--      a retry with backoff, or `failed`; if it moved on meanwhile (a sign-in,
--      an uninstall), the outcome is dropped;
--   4. release the claim; enqueue the next advance (now, or when the wait is over).
-- A crash anywhere before the settle leaves the row as it was, and the lock
-- goes with the dead connection: the job runs again (reliable fetch) and the
-- idempotent step finds its own earlier work. A crash after the settle and
-- before the enqueue is caught by the sweep (jobs/onboarding/sweep.lua), which
-- wakes orgs whose step is overdue.
local config = require "config"
local jobs = require "mc.jobs"
local log = require "mc.log"
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local states = require "onboarding.states"
local steps = require "onboarding.steps"
local hooks = require "lib.hooks"
local api = require "lib.api"
local alerts = require "watch.alerts"

local _M = {}

local JOB = "onboarding.advance"

local function settings()
  return {
    poll_min = config.get("ONBOARDING_POLL_MIN"),
    poll_max = config.get("ONBOARDING_POLL_MAX"),
    retry_max = config.get("ONBOARDING_RETRY_MAX"),
    attempts = config.get("ONBOARDING_MAX_ATTEMPTS"),
    wait_limit = config.get("ONBOARDING_WAIT_LIMIT"),
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

-- A failed org is said once, where it fails: a level=error line a log drain
-- can alert on, and the two mails (its admin: setup stopped and the ISV knows;
-- the operator: the error and the resume command), each a job of its own.
local function failed(org)
  log.error("onboarding failed", { org_id = org.org_id, org_name = org.org_name, step = org.failed_step,
    err = org.last_error, resume = "multiconnect console -e 'org(\"" .. org.org_id .. "\"):resume()'" })
  local ok, err = alerts.queue(org.org_id, "failed")
  if not ok then log.error("onboarding: could not queue the failure mails", { org_id = org.org_id, err = err }) end
end

-- announce(org, from, to): after a transition is committed, the log line and
-- the tenant's on_state hook (whose failure is only logged: the move stands).
function _M.announce(org, from, to)
  log.info("onboarding moved", { org_id = org.org_id, from = from, to = to })
  if to == "failed" and from ~= "failed" then failed(org) end
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
-- settle...(conn, org, ...) -> result, delay | nil, err. result: the new
-- state, "waiting" or "retrying"; delay: when the next run is due (nil: none).
local function moved(conn, org, to, fields, details)
  local row, why = orgs.transition(conn, org.org_id, to, "step",
    { from = org.state, fields = fields, details = details })
  if row == nil then return nil, why end
  -- the org's state is read under the row's lock just before: a refusal here
  -- is a step returning a move states.MOVES does not have, a bug
  if not row then error("onboarding: the step of " .. org.state .. " returned a refused move: " .. why) end
  return row.state, (not (states.PERSON[row.state] or states.FINAL[row.state])) and 0 or nil
end

local function settle_wait(conn, org, outcome, cfg)
  local attempts = org.attempts + 1
  local delay = _M.backoff(attempts - 1, cfg.poll_min, cfg.poll_max)
  local fields = outcome.fields
  fields.attempts = attempts
  fields.progress = merged_progress(org, fields.progress)
  fields.progress.failures = nil
  fields.last_error = mc.null -- a wait is not a failure: a retry's error is over
  -- noted once per stretch of waiting (the runs before may have been retries)
  local first = org.attempts == 0 or org.last_error ~= mc.null
  local ok, err = orgs.update(conn, org.org_id, fields, { due = delay })
  if ok and first then ok, err = orgs.note(conn, org, "wait", { reason = outcome.wait }) end
  if not ok then return nil, err end
  return "waiting", delay
end

local function settle_failure(conn, org, err, retry, cfg)
  local attempts = org.attempts + 1
  local failures = (tonumber(org.progress.failures) or 0) + 1
  if retry and failures < cfg.attempts then
    -- never sooner than the service asked (Retry-After), never a tight loop
    local delay = math.max(_M.backoff(failures, cfg.poll_min, cfg.retry_max), api.wait_of(retry) or 0)
    local ok, uerr = orgs.update(conn, org.org_id, { attempts = attempts, last_error = err,
      progress = merged_progress(org, { failures = failures }) }, { due = delay })
    if ok then ok, uerr = orgs.note(conn, org, "retry", { error = err, attempt = failures, retry_in = delay }) end
    if not ok then return nil, uerr end
    return "retrying", delay
  end
  if retry then err = err .. " (gave up after " .. failures .. " attempts)" end
  -- the snapshot announce() says the failure from (its log line named neither before)
  org.failed_step, org.last_error = org.state, err
  return moved(conn, org, "failed", { failed_step = org.state, last_error = err, attempts = attempts },
    { error = err, step = org.state })
end

local function settle(conn, org, outcome, err, retry, cfg)
  if outcome and outcome.to then
    local fields = outcome.fields
    fields.attempts, fields.last_error, fields.progress = 0, mc.null, {}
    return moved(conn, org, outcome.to, fields, outcome.details)
  end
  if outcome and outcome.wait then
    if org.in_state <= cfg.wait_limit then return settle_wait(conn, org, outcome, cfg) end
    err, retry = "gave up waiting: " .. outcome.wait, false
  end
  return settle_failure(conn, org, err, retry, cfg)
end

-- The claim: a session-level advisory lock on the org's id, in a key space of
-- its own (the two-int form; migrate uses the one-bigint form). It outlives no
-- connection: a runner that dies lets go of it.
local CLAIM = 1836213359 -- any constant of ours

-- claim(conn, org[, wait_ms]) -> true | false (another runner holds it) | nil, err
-- Without wait_ms it only tries; with it, it waits that long for a running step.
function _M.claim(conn, org, wait_ms)
  if not wait_ms then
    local rows, err = conn:query("SELECT pg_try_advisory_lock($1, $2::int) AS got", CLAIM, org.id)
    if not rows then return nil, err end
    return rows[1].got
  end
  local timed_out = false
  local ok, err = conn:transaction(function()
    local set, serr = conn:query("SELECT set_config('lock_timeout', $1, true)", wait_ms .. "ms")
    if not set then return nil, serr end
    local rows, lerr, sqlstate = conn:query("SELECT pg_advisory_lock($1, $2::int)", CLAIM, org.id)
    if not rows and sqlstate == "55P03" then timed_out = true; return nil, lerr end
    return rows, lerr
  end)
  if timed_out then return false end
  if not ok then return nil, err end
  return true -- a session lock: it outlives the transaction that took it
end

function _M.release(conn, org)
  local ok, err = conn:query("SELECT pg_advisory_unlock($1, $2::int)", CLAIM, org.id)
  if not ok then log.error("onboarding: could not release the claim", { org_id = org.org_id, err = err }) end
end

local function due(org, opts)
  if states.FINAL[org.state] or states.PERSON[org.state] then return false end
  return (opts and opts.force) or not org.early
end

-- With the claim held: the step, then its outcome settled in one short
-- transaction, if the org is still where the step found it.
-- -> result, delay, org | nil, err
local function advance_claimed(conn, org_id, opts)
  local cfg = settings()
  local org, gerr = orgs.get(conn, org_id) -- as it is now that we hold the claim
  if org == nil then return nil, "reading the org: " .. tostring(gerr) end
  if not org or not due(org, opts) then return "idle" end
  org.tenant = orgs.public(org)
  local ctx = { conn = conn, save = function(fields) return orgs.update(conn, org_id, fields) end }
  local outcome, serr, retry = run_step(org, ctx)
  local result, delay
  local ok, err = conn:transaction(function()
    local cur, cerr = orgs.get(conn, org_id, "update")
    if cur == nil then return nil, "reading the org: " .. tostring(cerr) end
    if not cur or cur.state ~= org.state then result = "moved on"; return true end
    org.in_state = cur.in_state
    result, delay = settle(conn, org, outcome, serr, retry, cfg)
    if not result then return nil, "settling the step: " .. tostring(delay) end
    return true
  end)
  if not ok then return nil, err end
  return result, delay, org
end

-- advance(org_id[, opts]) -> what happened ("busy", "idle", "waiting",
-- "retrying", "moved on", a new state, or "failed") | nil, err.
-- opts.force: run even if the step is not due yet.
function _M.advance(org_id, opts)
  local conn, cerr = db.conn()
  if not conn then return nil, cerr end
  local org, gerr = orgs.get(conn, org_id)
  if org == nil then return nil, "reading the org: " .. tostring(gerr) end
  if not org then return "busy" end -- gone
  if not due(org, opts) then return "idle" end
  local got, lerr = _M.claim(conn, org)
  if got == nil then return nil, "claiming the org: " .. tostring(lerr) end
  if not got then return "busy" end -- another runner has it
  local ok, result, delay, from = pcall(advance_claimed, conn, org_id, opts)
  _M.release(conn, org)
  if not ok then error(result, 0) end
  if not result then return nil, delay end
  if from and states.known(result) then _M.announce(from, from.state, result) end
  if delay then
    local jid, jerr = _M.enqueue(org_id, delay)
    if not jid then log.error("onboarding: could not enqueue the next step", { org_id = org_id, err = jerr }) end
  end
  return result
end

return _M
