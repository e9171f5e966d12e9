-- watch.record: the sync_health table (sql/003): what the last visit of each
-- onboarded org saw, and its degraded episode. Every function takes the
-- connection to use -> the row | nil, err.
local json = require "mc.json"
local one = require("lib.db").one

local _M = {}

-- get(db, org_id) -> row | false (never visited) | nil, err
function _M.get(db, org_id)
  return one(db:query("SELECT * FROM sync_health WHERE org_id = $1", org_id))
end

-- saw(db, org_id, seen) -> row: a reading judged (watch.judge's result)
function _M.saw(db, org_id, seen)
  return one(db:query([[INSERT INTO sync_health (org_id, checked_at, connection_state, mappings, problems, error,
      last_sync_at)
    VALUES ($1, now(), $2, $3::jsonb, $4::jsonb, NULL, to_timestamp($5::float8))
    ON CONFLICT (org_id) DO UPDATE SET checked_at = now(), connection_state = EXCLUDED.connection_state,
      mappings = EXCLUDED.mappings, problems = EXCLUDED.problems, error = NULL,
      last_sync_at = coalesce(EXCLUDED.last_sync_at, sync_health.last_sync_at)
    RETURNING *]], org_id, seen.connection_state, json.encode(json.array(seen.mappings)),
    json.encode(json.array(seen.problems)), seen.last_sync or mc.null))
end

-- unreadable(db, org_id, err) -> row: the visit could not read the connection;
-- what was seen before stays, with the error beside it
function _M.unreadable(db, org_id, why)
  return one(db:query([[INSERT INTO sync_health (org_id, checked_at, error) VALUES ($1, now(), $2)
    ON CONFLICT (org_id) DO UPDATE SET checked_at = now(), error = EXCLUDED.error RETURNING *]], org_id, why))
end

-- episode(db, org_id, open) -> row: a degraded episode begins (open) or ends
function _M.episode(db, org_id, open)
  if open then
    return one(db:query([[UPDATE sync_health SET episode_since = now(), alerted_at = NULL
      WHERE org_id = $1 RETURNING *]], org_id))
  end
  return one(db:query([[UPDATE sync_health SET episode_since = NULL, alerted_at = NULL
    WHERE org_id = $1 RETURNING *]], org_id))
end

-- alerted(db, org_id) -> row: this episode's alerts are queued
function _M.alerted(db, org_id)
  return one(db:query("UPDATE sync_health SET alerted_at = now() WHERE org_id = $1 RETURNING *", org_id))
end

return _M
