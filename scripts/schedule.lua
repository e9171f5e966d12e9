-- The clock's schedule (`multiconnect clock`): a list of entries, each enqueueing
-- a job of scripts/jobs/ when due, once across all clock processes (UTC).
--
--   { name = "social-sync", job = "social.sync", cron = "*/10 * * * *", args = { "all" } },
--   { name = "heartbeat", job = "ops.ping", every = 30, queue = "low", retry = false },
--
-- `cron` is a five-field expression (minute hour day month weekday); `every` is
-- seconds. `args` is an array, or a function of the tick (epoch seconds) returning
-- one. `multiconnect clock --check` validates this file.
local config = require "config"

return {
  -- wakes orgs whose next onboarding step was lost (jobs/onboarding/sweep.lua)
  { name = "onboarding-sweep", job = "onboarding.sweep", cron = "* * * * *" },
  -- one social.tenant job per active tenant (jobs/social/sync.lua)
  { name = "social-sync", job = "social.sync", cron = "*/10 * * * *" },
  -- one health.check per onboarded org, spread over the interval (jobs/health/watch.lua)
  { name = "health-watch", job = "health.watch", every = config.get("HEALTH_INTERVAL") },
  -- drops offboarded tenants' archived schemas past ARCHIVE_DAYS (jobs/archives/prune.lua)
  { name = "archives-prune", job = "archives.prune", cron = "17 * * * *" },
}
