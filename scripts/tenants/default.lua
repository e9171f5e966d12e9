-- The default tenant hooks. Runs in an isolate (scripts/lib/hooks.lua):
-- plain data in, plain data out; no os, io, require or print. A tenant's
-- <org_id>.lua overrides any of these and can call them as default.<name>(...).
local hooks = {}

-- The Heroku Connect mapping document to import for this tenant; `base` is
-- mappings/<org_id>.json or mappings/default.json.
function hooks.mapping(_, base)
  return base
end

-- The tenant's Postgres schema: "salesforce" .. the lower-cased 18-char org id
-- (the 18-char form is case-safe; the 15-char one is not).
function hooks.schema_name(tenant)
  return "salesforce" .. tenant.org_id:lower()
end

-- Called after each onboarding transition; an error here is only logged.
function hooks.on_state(_, _, _)
end

-- Sees each mail to the admin ({subject, text, html}) before it is sent: returns
-- it, a changed copy, or false to send nothing.
function hooks.email(_, _, message)
  return message
end

-- The accounts whose posts social sync fetches ({sfid, name, handle} each, read
-- from the tenant's Account table): by default every one with a handle. Return
-- a subset, or changed handles (for Mastodon: "#tag", or "@user@host" for an
-- account's own posts).
function hooks.social_accounts(_, accounts)
  local out = {}
  for _, a in ipairs(accounts) do
    if type(a.handle) == "string" and a.handle:match("%S") then out[#out + 1] = a end
  end
  return out
end

-- Where the tenant's posts come from: "x" (X API v2) or "mastodon" (MASTODON_URL).
function hooks.social_provider(_)
  return "x"
end

-- Which database holds the tenant's schema, chosen once, at its first
-- onboarding step: the `key` of one of `choices` ({key, tenants} each, in the
-- order of CONNECT_DB_KEY then TENANT_DATABASES; tenants: how many onboarded
-- or onboarding orgs it holds). By default the least loaded, the first on a tie.
function hooks.database(_, choices)
  local best = choices[1]
  for _, c in ipairs(choices) do
    if c.tenants < best.tenants then best = c end
  end
  return best.key
end

return hooks
