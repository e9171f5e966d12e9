-- Social sync (scripts/social/): where each tenant's feeds stand. One row per
-- org, provider and source (an X handle, a Mastodon tag or account). Written in
-- the same transaction as the posts it accounts for (scripts/social/ingest.lua),
-- so a cursor never runs ahead of the rows in the tenant's table.
--   since_id   every post up to this id is stored
--   until_id   a run stopped part way down a newer stretch: posts below this id
--              (and above since_id) are still to fetch
--   newest_id  the newest id of that unfinished stretch; becomes since_id when
--              the stretch is done
-- Ids are compared as numbers written in decimal (X and Mastodon ids are).
CREATE TABLE social_cursors (
  org_id      varchar(18) NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
  provider    text NOT NULL CHECK (provider IN ('x', 'mastodon')),
  source      text NOT NULL CHECK (length(source) BETWEEN 1 AND 255),
  since_id    text CHECK (since_id ~ '^[0-9]{1,30}$'),
  until_id    text CHECK (until_id ~ '^[0-9]{1,30}$'),
  newest_id   text CHECK (newest_id ~ '^[0-9]{1,30}$'),
  inserted    bigint NOT NULL DEFAULT 0,  -- posts this source has added, in total
  last_run_at timestamptz,
  PRIMARY KEY (org_id, provider, source)
);
