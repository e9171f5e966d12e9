-- What the health watch (scripts/watch/, jobs/health/) last saw of each
-- onboarded tenant's sync: one row per org, rewritten at every visit, and when
-- the current degraded episode began and was alerted (once per episode). The
-- moves between active and degraded are in onboarding_events, as every move is.
CREATE TABLE sync_health (
  org_id              varchar(18) PRIMARY KEY REFERENCES organizations (org_id) ON DELETE CASCADE,
  checked_at          timestamptz NOT NULL DEFAULT now(),
  connection_state    text,             -- Connect's; NULL when the last read failed
  mappings            jsonb NOT NULL DEFAULT '[]', -- [{object_name, state, state_description, counts}]
  problems            jsonb NOT NULL DEFAULT '[]', -- [{kind, text}]: why the org is degraded
  error               text,             -- the last read failed: why (no verdict then)
  last_sync_at        timestamptz,      -- the newest sync activity any mapping reported
  episode_since       timestamptz,      -- when the current degraded episode began
  alerted_at          timestamptz       -- when this episode's alerts were queued (once per episode)
);
