-- Offboarded tenants' schemas, kept (scripts/offboarding/archives.lua): at an
-- uninstall or an operator's offboard the schema is renamed to archive_name
-- (its tables and rows untouched) and kept until drop_after (ARCHIVE_DAYS).
-- A reinstall before then renames it back (restored_at); after it the
-- archives.prune job drops it (dropped_at). An export is pg_dump of archive_name.
CREATE TABLE tenant_archives (
  id           bigserial PRIMARY KEY,
  org_id       varchar(18) NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
  schema_name  text NOT NULL,          -- the tenant's schema, and its name again on a restore
  archive_name text NOT NULL,          -- what it is called while archived
  archived_at  timestamptz NOT NULL DEFAULT now(),
  drop_after   timestamptz NOT NULL,
  restored_at  timestamptz,
  dropped_at   timestamptz
);

-- One archive per org at a time; an archive name is never held twice.
CREATE UNIQUE INDEX tenant_archives_live ON tenant_archives (org_id)
  WHERE restored_at IS NULL AND dropped_at IS NULL;
CREATE UNIQUE INDEX tenant_archives_name ON tenant_archives (archive_name)
  WHERE restored_at IS NULL AND dropped_at IS NULL;
