-- clients.salesforce: the org's side (docs/external-apis.md §3): the OAuth web-server flow at the
-- org's login host, the identity URL, and the package's Apex REST resource at the
-- org's instance. Config: SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET (the
-- connected app), SALESFORCE_LOGIN_URL (production orgs, default
-- https://login.salesforce.com), SALESFORCE_SANDBOX_LOGIN_URL (sandbox orgs, default
-- https://test.salesforce.com), FORCE_NAMESPACE (the package's namespace, if managed),
-- APP_URL (our public base URL, for the OAuth redirect_uri).
local config = require "config"
local api = require "lib.api"
local http = require "mc.http"
local crypto = require "mc.crypto"
local log = require "mc.log"

local _M = {}

function _M.redirect_uri() return config.app_url() .. "/auth/salesforce/callback" end

-- The login host for the org's environment (a custom one is its My Domain).
function _M.login_url(org)
  if org.environment == "sandbox" then
    return (config.get("SALESFORCE_SANDBOX_LOGIN_URL"):gsub("/+$", ""))
  elseif org.environment == "custom" then
    return "https://" .. org.login_domain
  end
  return (config.get("SALESFORCE_LOGIN_URL"):gsub("/+$", ""))
end

-- The browser's first stop: Salesforce's authorize page, with the admin's
-- username as the login hint and `state` binding the answer to this org.
function _M.authorize_url(org, state)
  return _M.login_url(org) .. "/services/oauth2/authorize?" .. http.encode_query({
    response_type = "code", client_id = config.need("SALESFORCE_CLIENT_ID"),
    redirect_uri = _M.redirect_uri(), scope = "api refresh_token", state = state,
    login_hint = org.admin_email, prompt = "login consent",
  })
end

local function token_call(org, form)
  form.client_id = config.need("SALESFORCE_CLIENT_ID")
  form.client_secret = config.need("SALESFORCE_CLIENT_SECRET")
  local res, err, retry = api.call{ service = "salesforce", method = "POST",
    url = _M.login_url(org) .. "/services/oauth2/token", form = form,
    headers = { Accept = "application/json" } }
  if not res then return nil, err, retry end
  local doc = res:json()
  if type(doc) ~= "table" or type(doc.access_token) ~= "string" or type(doc.instance_url) ~= "string" then
    return nil, "salesforce: token response without access_token/instance_url", false
  end
  return doc
end

-- exchange(org, code) -> token response | nil, err, retryable
function _M.exchange(org, code)
  return token_call(org, { grant_type = "authorization_code", code = code, redirect_uri = _M.redirect_uri() })
end

-- The identity URL decides which org signed in, so it must be Salesforce's
-- own: on the login host that issued the token, or https on a salesforce.com host.
local function trusted_identity_url(org, url)
  if type(url) ~= "string" then return false end
  local login = _M.login_url(org)
  if url:sub(1, #login + 1) == login .. "/" then return true end
  local host = url:match("^https://([^/:?#]+)/")
  return host ~= nil and (host == "login.salesforce.com" or host == "test.salesforce.com"
    or host:sub(-15) == ".salesforce.com")
end

-- identity(org, tokens) -> the identity document (organization_id, user_id, username) | nil, err, retryable
function _M.identity(org, tokens)
  if not trusted_identity_url(org, tokens.id) then
    return nil, "salesforce: the token response's identity URL is not Salesforce's: " .. tostring(tokens.id), false
  end
  local res, err, retry = api.call{ service = "salesforce", method = "GET", url = tokens.id,
    headers = { Authorization = "Bearer " .. tokens.access_token, Accept = "application/json" } }
  if not res then return nil, err, retry end
  local doc = res:json()
  if type(doc) ~= "table" or type(doc.organization_id) ~= "string" then
    return nil, "salesforce: identity without organization_id", false
  end
  return doc
end

-- ---- the org's stored session ----------------------------------------------

-- Tokens are sealed with the org id as context: a token copied onto another
-- org's row does not open.
local function context(org, what) return "organizations." .. what .. ":" .. org.org_id end
_M.context = context -- for `multiconnect keys rotate`, which re-seals them (scripts/keys.lua)

-- The org's columns that hold a sealed token.
_M.SEALED = { "access_token", "refresh_token" }

function _M.seal(org, what, token) return crypto.seal(token, context(org, what)) end

local function open(org, what)
  local sealed = org[what]
  if type(sealed) ~= "string" then return nil, "salesforce: no " .. what:gsub("_", " ") .. " stored" end
  local plain, err = crypto.open(sealed, context(org, what))
  if not plain then return nil, "salesforce: stored " .. what:gsub("_", " ") .. " does not open: " .. err end
  return plain
end

-- refresh(org, save) -> access token | nil, err, retryable; save(fields) -> row |
-- nil, err stores the new sealed token(s) on the org's row at once (no step
-- transaction holds it back: a rotated token is never lost to a rollback).
function _M.refresh(org, save)
  local refresh, err = open(org, "refresh_token")
  if not refresh then return nil, err, false, true end
  local doc, terr, retry = token_call(org, { grant_type = "refresh_token", refresh_token = refresh })
  if not doc then
    -- revoked, expired, or rotated away by a refresh whose result we lost: only
    -- the admin signing in again gives the org a session
    return nil, terr, retry, not retry and terr:find("invalid_grant", 1, true) ~= nil
  end
  local fields = { access_token = _M.seal(org, "access_token", doc.access_token), instance_url = doc.instance_url }
  if type(doc.refresh_token) == "string" then -- rotation: the old one is revoked
    fields.refresh_token = _M.seal(org, "refresh_token", doc.refresh_token)
  end
  local saved, serr = save(fields)
  if not saved then return nil, "storing the refreshed session: " .. tostring(serr), true end
  for k, v in pairs(fields) do org[k] = v end
  log.info("salesforce session refreshed", { org_id = org.org_id, rotated = fields.refresh_token ~= nil })
  return doc.access_token
end

-- apex(org, resource, body, save) -> res | nil, err, retryable, reauth: POSTs to
-- the package's Apex REST resource; an expired session (401) is refreshed once;
-- reauth is true when the refresh token itself is dead.
function _M.apex(org, resource, body, save)
  local ns = config.get("FORCE_NAMESPACE")
  local path = "/services/apexrest/" .. (ns and (ns .. "/") or "") .. resource
  local access, err = open(org, "access_token")
  if not access then return nil, err, false end
  for attempt = 1, 2 do
    local res, cerr, retry, raw = api.call{ service = "salesforce", method = "POST",
      url = org.instance_url:gsub("/+$", "") .. path, json = body,
      headers = { Authorization = "Bearer " .. access, Accept = "application/json" } }
    if res then return res end
    if not (raw and raw.status == 401 and attempt == 1) then return nil, cerr, retry end
    local rerr, rretry, reauth
    access, rerr, rretry, reauth = _M.refresh(org, save)
    if not access then return nil, "refreshing the session: " .. rerr, rretry, reauth end
  end
end

return _M
