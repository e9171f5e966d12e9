-- Tenants over several databases: the config var (CONNECT_DB_KEY or one of
-- TENANT_DATABASES) whose Postgres holds the org's schema, chosen once by the
-- `database` tenant hook in the first onboarding step, given to Heroku Connect
-- as its db_key, and used by everything that touches the schema. NULL: not
-- chosen yet, or an org onboarded before this column (CONNECT_DB_KEY then).
ALTER TABLE organizations ADD COLUMN db_key text
  CHECK (db_key ~ '^[A-Z][A-Z0-9_]*$');
