-- jobs.social.tenant(org_id): one tenant's social run (social.sync). A run that
-- meets a rate limit or the tenant's budget is not a failure: it enqueues
-- itself for when the window resets -- once, however many fan-outs come in the
-- meantime (social:deferred:<org> marks the deferred job) -- and succeeds.
local jobs = require "mc.jobs"
local db = require "lib.db"
local host = require "mc.host"
local sync = require "social.sync"

local _M = {}

function _M.perform(args, ctx)
  local org_id = args[1]
  if type(org_id) ~= "string" then return nil, "social.tenant: args must be [org_id]" end
  local r, rerr = db.redis()
  if not r then return nil, rerr end
  local deferred_key = "social:deferred:" .. org_id
  -- the deferred run clears its mark, so a later limit can defer again
  if args[2] == "deferred" then r:call("DEL", deferred_key) end
  local summary, err = sync.run(org_id, { log = ctx.log })
  if not summary then return nil, err end
  ctx.log.info("social tenant run", { org_id = org_id, status = summary.status, reason = summary.reason,
    accounts = summary.accounts, requests = summary.requests, fetched = summary.fetched,
    inserted = summary.inserted, updated = summary.updated })
  if summary.status ~= "deferred" then return true end
  local at = summary.defer_until + 1 + math.random() * 5 -- spread tenants over the reset
  local ttl = math.max(1, math.ceil(at - host.time()) + 60)
  local fresh = r:call("SET", deferred_key, string.format("%.3f", at), "NX", "EX", ttl)
  if fresh ~= "OK" then return true end -- a deferred run is already waiting
  local jid, eerr = jobs.enqueue("social.tenant", { org_id, "deferred" }, { at = at, retry = 5 })
  if not jid then
    r:call("DEL", deferred_key)
    return nil, eerr
  end
  ctx.log.info("social tenant deferred", { org_id = org_id, until_at = math.floor(at) })
  return true
end

return _M
