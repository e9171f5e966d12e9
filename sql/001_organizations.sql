-- The tenants: one row per Salesforce org that installed the package, moved
-- through the onboarding states by the onboarding.advance job (scripts/onboarding/).
CREATE TABLE organizations (
  id               bigserial PRIMARY KEY,
  org_id           varchar(18) NOT NULL UNIQUE
                   CHECK (org_id ~ '^00D[A-Za-z0-9]{15}$'),
  org_name         text NOT NULL CHECK (length(org_name) BETWEEN 1 AND 255),
  admin_email      text NOT NULL CHECK (length(admin_email) BETWEEN 3 AND 254),
  installer_id     varchar(18),
  package_version  text,
  environment      text NOT NULL DEFAULT 'production'
                   CHECK (environment IN ('production', 'sandbox', 'custom')),
  login_domain     text CHECK ((environment = 'custom') = (login_domain IS NOT NULL)),
  state            text NOT NULL DEFAULT 'received',
  failed_step      text,            -- the state whose step failed (state = 'failed')
  last_error       text,
  attempts         integer NOT NULL DEFAULT 0, -- of the current step, for backoff
  next_attempt_at  timestamptz,     -- when the current step is due again (NULL: waiting on a person)
  state_since      timestamptz NOT NULL DEFAULT now(), -- when the org entered its state
  progress         jsonb NOT NULL DEFAULT '{}', -- the current step's notes (e.g. when it sent a PATCH)
  addon_name       text UNIQUE,     -- chosen before the add-on is created, so a re-run finds it
  addon_id         text,
  connection_id    text,
  region_url       text,
  schema_name      text UNIQUE CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$' AND schema_name !~ '^pg_'),
  authorize_url    text,            -- Heroku Connect's authorize URL for the org's admin
  instance_url     text,
  sf_user_id       varchar(18),
  sf_username      text,
  access_token     text,            -- sealed (mc.crypto), never plain
  refresh_token    text,            -- sealed
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  activated_at     timestamptz,
  offboarded_at    timestamptz
);

CREATE INDEX organizations_due ON organizations (next_attempt_at)
  WHERE next_attempt_at IS NOT NULL;

-- Every transition and every failed attempt, in order.
CREATE TABLE onboarding_events (
  id          bigserial PRIMARY KEY,
  org_id      varchar(18) NOT NULL REFERENCES organizations (org_id) ON DELETE CASCADE,
  from_state  text,
  to_state    text NOT NULL,
  kind        text NOT NULL DEFAULT 'transition'
              CHECK (kind IN ('transition', 'retry', 'wait', 'failure', 'request')),
  details     jsonb NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX onboarding_events_org ON onboarding_events (org_id, id);
