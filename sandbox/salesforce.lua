-- sandbox.salesforce: the simulated Salesforce orgs (sandbox.orgs), as a login host
-- and their instance at once (docs/external-apis.md §3). Mounted twice: /salesforce is
-- login.salesforce.com (production orgs' users log in there), /salesforce-test is
-- test.salesforce.com (sandbox orgs' users); a user at the wrong host gets the login
-- error page. Clients use SALESFORCE_LOGIN_URL=<sandbox>/salesforce; instance_url and
-- the identity URL point back at the same base (from the Host header).
--   GET  /services/oauth2/authorize      a login/approve page; knob auto_approve: 302
--                                        redirect_uri?code&state; knob deny: ?error=access_denied
--   POST /services/oauth2/authorize      the page's form (action=allow|deny) -> the same 302s
-- The user who logs in: login_hint (the form's username), else the browser's session
-- (header X-Sandbox-Login, which the simulated admin sends), else the knobs' user.
--   GET  /setup/secur/RemoteAccessErrorPage.apexp   where a bad client_id/redirect_uri lands
--   POST /services/oauth2/token          grant_type authorization_code | refresh_token
--   GET  /id/{orgId}/{userId}            the identity document (Bearer token)
--   POST /services/apexrest/[ns/]AuthConnection   {"connectionId","authorizeUrl"} -> 200, empty;
--                                        stored as the session's org's Connection__c
--                                        (sandbox:salesforce:org:<org_id>:Connection__c)
-- Knobs (service "salesforce"): client_id, client_secret, redirect_uris (list; unset: any
-- http(s) URL), auto_approve, deny, scope (granted when none is asked), org_id, user_id,
-- username, org_name, namespace (managed: /ns/AuthConnection only), token_ttl (seconds,
-- default 7200), code_ttl (900), refresh_rotation, grant_error (forces a token error such
-- as "inactive_user"), apex_access (false: 403), apex_error (true: 500), identity_errors
-- ("rest": 401 INVALID_SESSION_ID, default; "identity": 403 Bad_OAuth_Token text),
-- and the fault knobs of sandbox.faults.
local json = require "mc.json"
local host = require "mc.host"
local crypto = require "mc.crypto"
local http = require "mc.http"
local store = require "sandbox.store"
local orgs = require "sandbox.orgs"
local faults = require "sandbox.faults"

local _M = {}

local SERVICE = "salesforce"
local ORG_ID = "00D5e000000AbCd"
local USER_ID = "0055e000001XyZw"
local APEX_FIELDS = { connectionId = true, authorizeUrl = true }

local function knob(name, default) return store.knob(SERVICE, name, default) end

_M.id18 = orgs.id18

-- The org and user a login lands in: the simulated org's user named by username,
-- else the knobs' org (by default the fixture's first org and user). `known` says
-- whether a simulated org's user was named (only those are held to their login host).
local function org(username)
  local fo, fu = orgs.by_username(username)
  if fo then
    return { org_id = fo.org_id, user_id = fu.user_id, username = fu.username, org_name = fo.name,
             environment = fo.environment, known = true }
  end
  local org_id = _M.id18(knob("org_id", ORG_ID))
  return {
    org_id = org_id, user_id = _M.id18(knob("user_id", USER_ID)),
    username = knob("username", "admin@acme.example"), org_name = knob("org_name", "Acme"),
    environment = "production",
  }
end

local function nonempty(s) return type(s) == "string" and s ~= "" and s or nil end

-- The username a login names: the form's username or login_hint, else the browser's
-- Salesforce session (the simulated admin's X-Sandbox-Login header) -> string | nil
function _M.login_of(req, p)
  return nonempty(p.username) or nonempty(p.login_hint) or nonempty(req.headers["x-sandbox-login"])
end

local function random_token(n)
  return (crypto.to_base64url(crypto.random(n)):gsub("[-_]", "x"))
end

local html_escape = require("mc.template").escape

local function with_query(url, params)
  return url .. (url:find("?", 1, true) and "&" or "?") .. http.encode_query(params)
end

local function base_url(req, prefix)
  return "http://" .. (req.headers["host"] or "127.0.0.1") .. prefix
end

local function load(kind, id)
  if type(id) ~= "string" or id == "" then return nil end
  local raw = store.call("GET", store.key(SERVICE, kind, id))
  if raw == mc.null then return nil end
  return json.decode(raw)
end

-- ---- errors ----------------------------------------------------------------

-- The REST envelope: a JSON array of {message, errorCode}.
local function rest_error(status, code, message)
  return status, { { message = message, errorCode = code } }, { ["Content-Type"] = "application/json;charset=UTF-8" }
end

local FAULT_CODES = { [500] = "UNKNOWN_EXCEPTION", [503] = "SERVER_UNAVAILABLE", [403] = "REQUEST_LIMIT_EXCEEDED" }

local function fault(status)
  return rest_error(status, FAULT_CODES[status] or "UNKNOWN_EXCEPTION", "The sandbox injected this failure.")
end

local function oauth_error(code, description, status)
  return status or 400, { error = code, error_description = description }
end

local GRANT_ERRORS = {
  inactive_user = "user is inactive", inactive_org = "organization is inactive",
  invalid_grant = "authentication failure", rate_limit_exceeded = "rate limit exceeded",
}

-- ---- authorize -------------------------------------------------------------

-- The connected app's checks, in Salesforce's order -> nil | error, description.
-- These never redirect to the client: the user lands on Salesforce's error page.
local function check_client(p)
  local client_id = knob("client_id")
  if not p.client_id or p.client_id == "" or (client_id and p.client_id ~= client_id) then
    return "invalid_client_id", "client identifier invalid"
  end
  local uri = p.redirect_uri
  if type(uri) ~= "string" or not uri:match("^https?://[^%s]+$") then
    return "redirect_uri_mismatch", "redirect_uri must match configuration"
  end
  local allowed = knob("redirect_uris")
  if type(allowed) == "table" then
    for _, u in ipairs(allowed) do if u == uri then return nil end end
    return "redirect_uri_mismatch", "redirect_uri must match configuration"
  end
  return nil
end

local function redirect(url)
  return 302, "", { Location = url, ["Content-Type"] = "text/html;charset=UTF-8" }
end

local function back_with(p, params)
  if p.state then params.state = p.state end
  return redirect(with_query(p.redirect_uri, params))
end

local function issue_code(p, o)
  local code = "aPr" .. random_token(36)
  local doc = { client_id = p.client_id, redirect_uri = p.redirect_uri,
                scope = (p.scope and p.scope ~= "") and p.scope or knob("scope", "api refresh_token"),
                org_id = o.org_id, user_id = o.user_id }
  store.call("SET", store.key(SERVICE, "code", code), json.encode(doc), "EX",
    math.max(1, math.floor(tonumber(knob("code_ttl", 900)))))
  return code
end

-- Salesforce's answer to a login it refuses (here: a user at the other login host).
function _M.login_error_page()
  return 200, table.concat({
    "<!DOCTYPE html><html><head><title>Login | Salesforce (sandbox)</title></head><body>",
    '<div id="error" class="loginError">Please check your username and password. If you still',
    " can't log in, contact your Salesforce administrator.</div></body></html>" }),
    { ["Content-Type"] = "text/html;charset=UTF-8" }
end

-- After the client checks: the login (a simulated org's user only at their org's
-- login host), then the answer the user gives (deny, or approve).
local function decide(host_env, prefix, req, p, deny)
  local err, desc = check_client(p)
  if err then
    return redirect(with_query(base_url(req, prefix) .. "/setup/secur/RemoteAccessErrorPage.apexp",
      { display = "page", error = err, error_description = desc }))
  end
  local o = org(_M.login_of(req, p))
  if o.known and o.environment ~= host_env then return _M.login_error_page() end
  if p.response_type ~= "code" then
    return back_with(p, { error = "unsupported_response_type", error_description = "response type not supported" })
  end
  if deny then
    return back_with(p, { error = "access_denied", error_description = "end-user denied authorization" })
  end
  return back_with(p, { code = issue_code(p, o) })
end

local FIELDS = { "response_type", "client_id", "redirect_uri", "state", "scope", "login_hint" }

local function login_page(prefix, req, p)
  local hidden = {}
  for _, k in ipairs(FIELDS) do
    if type(p[k]) == "string" then
      hidden[#hidden + 1] = string.format('<input type="hidden" name="%s" value="%s">', k, html_escape(p[k]))
    end
  end
  local o = org(_M.login_of(req, p))
  return 200, table.concat({
    "<!DOCTYPE html><html><head><title>Login | Salesforce (sandbox)</title></head><body>",
    "<h1>Salesforce sandbox</h1>",
    '<form method="POST" action="', html_escape(prefix), '/services/oauth2/authorize">',
    table.concat(hidden),
    '<label>Username <input name="username" value="', html_escape(o.username), '"></label>',
    '<label>Password <input type="password" name="pw"></label>',
    "<p>Allow access to ", html_escape(p.client_id or "?"), " (", html_escape(p.scope or "default scopes"), ")?</p>",
    '<button name="action" value="allow">Allow</button>',
    '<button name="action" value="deny">Deny</button>',
    "</form></body></html>" }), { ["Content-Type"] = "text/html;charset=UTF-8" }
end

local function authorize_get(host_env, prefix)
  return function(req)
    local p = req.query
    if knob("deny", false) then return decide(host_env, prefix, req, p, true) end
    if knob("auto_approve", false) then return decide(host_env, prefix, req, p, false) end
    local err = check_client(p)
    if err then return decide(host_env, prefix, req, p, false) end
    return login_page(prefix, req, p)
  end
end

local function authorize_post(host_env, prefix)
  return function(req)
    local p = req.form()
    return decide(host_env, prefix, req, p, knob("deny", false) or p.action == "deny")
  end
end

local function error_page(req)
  local q = req.query
  return 200, "<!DOCTYPE html><html><body><h1>Remote Access Error</h1><p>error=" .. html_escape(q.error or "")
    .. "</p><p>error_description=" .. html_escape(q.error_description or "") .. "</p></body></html>",
    { ["Content-Type"] = "text/html;charset=UTF-8" }
end

-- ---- token -----------------------------------------------------------------

local function check_secret(f)
  local client_id = knob("client_id")
  if not f.client_id or f.client_id == "" or (client_id and f.client_id ~= client_id) then
    return oauth_error("invalid_client_id", "client identifier invalid")
  end
  local secret = knob("client_secret")
  if secret and f.client_secret ~= secret then
    return oauth_error("invalid_client", "invalid client credentials")
  end
end

local function grants_refresh(scope)
  for s in scope:gmatch("%S+") do
    if s == "refresh_token" or s == "offline_access" or s == "full" then return true end
  end
  return false
end

-- The token response; with_refresh adds a new refresh token.
local function tokens(prefix, req, grant, client_secret, with_refresh)
  local base = base_url(req, prefix)
  local issued = host.time()
  local access = grant.org_id:sub(1, 15) .. "!AQ" .. random_token(72)
  store.call("SET", store.key(SERVICE, "token", access), json.encode({
    org_id = grant.org_id, user_id = grant.user_id, client_id = grant.client_id,
    scope = grant.scope, issued_at = issued }), "EX", 86400)
  local id = base .. "/id/" .. grant.org_id .. "/" .. grant.user_id
  local issued_at = string.format("%d", math.floor(issued * 1000))
  local body = {
    access_token = access, instance_url = base, id = id, token_type = "Bearer", issued_at = issued_at,
    scope = grant.scope,
    signature = crypto.to_base64(crypto.hmac_sha256(client_secret or "", id .. issued_at)),
  }
  if with_refresh then
    body.refresh_token = "5Aep" .. random_token(64)
    store.call("SET", store.key(SERVICE, "refresh", body.refresh_token), json.encode({
      org_id = grant.org_id, user_id = grant.user_id, client_id = grant.client_id, scope = grant.scope }))
  end
  return 200, body, { ["Content-Type"] = "application/json;charset=UTF-8",
    ["Cache-Control"] = "no-cache,must-revalidate,max-age=0,no-store,private" }
end

local function code_grant(prefix, req, f)
  local key = store.key(SERVICE, "code", f.code or "")
  local grant = load("code", f.code)
  -- single use: whoever deletes it owns it
  if not grant or store.call("DEL", key) ~= 1 then
    return oauth_error("invalid_grant", "expired authorization code")
  end
  if grant.client_id ~= f.client_id then return oauth_error("invalid_grant", "authentication failure") end
  if f.redirect_uri ~= grant.redirect_uri then
    return oauth_error("redirect_uri_mismatch", "redirect_uri must match configuration")
  end
  return tokens(prefix, req, grant, f.client_secret, grants_refresh(grant.scope))
end

local function refresh_grant(prefix, req, f)
  local grant = load("refresh", f.refresh_token)
  if not grant or grant.client_id ~= f.client_id then
    return oauth_error("invalid_grant", "expired access/refresh token")
  end
  local rotate = knob("refresh_rotation", false)
  if rotate then store.call("DEL", store.key(SERVICE, "refresh", f.refresh_token)) end
  return tokens(prefix, req, grant, f.client_secret, rotate)
end

local function token(prefix)
  return function(req)
    local f = req.form()
    local forced = knob("grant_error")
    if forced then return oauth_error(forced, GRANT_ERRORS[forced] or forced) end
    if f.grant_type ~= "authorization_code" and f.grant_type ~= "refresh_token" then
      return oauth_error("unsupported_grant_type", "grant type not supported")
    end
    local status, body = check_secret(f)
    if status then return status, body end
    if f.grant_type == "authorization_code" then return code_grant(prefix, req, f) end
    return refresh_grant(prefix, req, f)
  end
end

-- ---- the session: identity and Apex REST -------------------------------------

-- The access token's session, if it is live -> session | nil
local function session(req)
  local auth = req.headers["authorization"] or ""
  local access = auth:match("^Bearer%s+(%S+)$") or auth:match("^OAuth%s+(%S+)$")
  local s = load("token", access)
  if not s then return nil end
  if host.time() - s.issued_at >= tonumber(knob("token_ttl", 7200)) then return nil end
  return s
end

local function invalid_session()
  return rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
end

local function identity(prefix)
  return function(req)
    local plain = knob("identity_errors", "rest") == "identity"
    local s = session(req)
    if not s then
      if plain then return 403, "Bad_OAuth_Token" end
      return invalid_session()
    end
    if req.params.org ~= s.org_id then
      if plain then return 403, "Wrong_Org" end
      return rest_error(403, "FORBIDDEN", "Wrong_Org")
    end
    if req.params.user ~= s.user_id then
      if plain then return 404, "Bad_Id" end
      return rest_error(404, "NOT_FOUND", "Bad_Id")
    end
    local o, base = org(), base_url(req, prefix)
    if s.user_id ~= o.user_id then -- a fixture user who logged in by name, not the knobs' one
      local _, user = orgs.by_user_id(s.user_id)
      if user then o = { username = user.username } end
    end
    local function svc(path) return base .. "/services/" .. path end
    return 200, {
      id = base .. "/id/" .. s.org_id .. "/" .. s.user_id, asserted_user = true,
      user_id = s.user_id, organization_id = s.org_id, username = o.username,
      nick_name = o.username:match("^[^@]+"), display_name = "Sandbox Admin", email = o.username,
      email_verified = true, first_name = "Sandbox", last_name = "Admin", timezone = "America/Los_Angeles",
      photos = { picture = base .. "/profilephoto/005/F", thumbnail = base .. "/profilephoto/005/T" },
      addr_street = mc.null, addr_city = mc.null, addr_state = mc.null, addr_country = "US", addr_zip = mc.null,
      mobile_phone = mc.null, mobile_phone_verified = false,
      status = { created_date = mc.null, body = mc.null },
      urls = {
        enterprise = svc("Soap/c/{version}/" .. s.org_id:sub(1, 15)),
        metadata = svc("Soap/m/{version}/" .. s.org_id:sub(1, 15)),
        partner = svc("Soap/u/{version}/" .. s.org_id:sub(1, 15)),
        rest = svc("data/v{version}/"), sobjects = svc("data/v{version}/sobjects/"),
        search = svc("data/v{version}/search/"), query = svc("data/v{version}/query/"),
        recent = svc("data/v{version}/recent/"), profile = base .. "/" .. s.user_id,
        custom_domain = base,
      },
      active = true, user_type = "STANDARD", language = "en_US", locale = "en_US", utcOffset = -28800000,
      last_modified_date = store.iso8601():gsub("Z$", ".000+0000"), is_app_installed = true,
    }, { ["Content-Type"] = "application/json;charset=UTF-8" }
  end
end

-- "AuthConnection[/...]" after "/services/apexrest/", with the namespace the org
-- has (knob namespace) -> true if it names the RESTAuthConnection class.
local function names_class(rest)
  local ns = knob("namespace")
  local path = rest
  if ns and ns ~= "" then
    if path:sub(1, #ns + 1) ~= ns .. "/" then return false end
    path = path:sub(#ns + 2)
  end
  return path == "AuthConnection" or path:sub(1, 15) == "AuthConnection/"
end

-- The JSON body bound to doPost(String connectionId, String authorizeUrl) -> args | nil, message
local function bind(body)
  body = body or ""
  local doc = body:match("^%s*{") and json.decode(body) or nil
  if type(doc) ~= "table" then
    local c = body:match("%S") or " "
    return nil, string.format("Unexpected character ('%s' (code %d)): expected a valid value at [line:1, column:1]",
      c, c:byte())
  end
  for k, v in pairs(doc) do
    if not APEX_FIELDS[k] then
      return nil, "Unexpected parameter encountered during deserialization: " .. tostring(k) .. " at [line:1, column:1]"
    end
    if v ~= mc.null and type(v) ~= "string" then
      return nil, "Cannot deserialize instance of String from " .. type(v) .. " value at [line:1, column:1]"
    end
  end
  return doc
end

local function apex(req)
  local s = session(req)
  if not s then return invalid_session() end
  if not names_class(req.params["*"] or "") then
    return rest_error(404, "NOT_FOUND", "Could not find a match for URL")
  end
  if req.method ~= "POST" then
    return rest_error(405, "METHOD_NOT_ALLOWED", "HTTP Method '" .. req.method .. "' not allowed. Allowed are POST")
  end
  if knob("apex_access", true) == false then
    return rest_error(403, "FORBIDDEN", "You do not have access to the Apex class named: RESTAuthConnection")
  end
  local args, err = bind(req.body)
  if not args then return rest_error(400, "JSON_PARSER_ERROR", err) end
  if knob("apex_error", false) then
    return rest_error(500, "APEX_ERROR", "System.NullPointerException: Attempt to de-reference a null object\n\n"
      .. "Class.RESTAuthConnection.doPost: line 12, column 1")
  end
  -- upserts the org's first Connection__c and sets Auth_URL__c
  local key = store.key(SERVICE, "org", s.org_id, "Connection__c")
  local raw = store.call("GET", key)
  local record = raw ~= mc.null and json.decode(raw) or nil
  if type(record) ~= "table" then record = { Id = _M.id18("a005e00000" .. random_token(6):sub(1, 5)) } end
  record.Connection_Id__c = args.connectionId ~= mc.null and args.connectionId or nil
  record.Auth_URL__c = args.authorizeUrl ~= mc.null and args.authorizeUrl or nil
  record.LastModifiedDate = store.iso8601()
  store.call("SET", key, json.encode(record))
  return 200, "", { ["Content-Type"] = "application/json;charset=UTF-8" }
end

-- org_state(org_id) -> what the sandbox knows of a simulated org and holds for it
-- (its Connection__c: mc.null until the Apex REST class wrote one) | nil
function _M.org_state(org_id)
  local o = orgs.by_id(org_id)
  local id = o and o.org_id or (type(org_id) == "string" and #org_id == 15 and _M.id18(org_id) or org_id)
  local raw = store.call("GET", store.key(SERVICE, "org", id, "Connection__c"))
  if not o and raw == mc.null then return nil end
  local out = { org_id = id, Connection__c = raw ~= mc.null and json.decode(raw) or mc.null }
  if o then
    out.name, out.environment = o.name, o.environment
    out.users, out.accounts = json.array(o.users), json.array(o.accounts)
  end
  return out
end

-- mount(app, prefix, environment): environment "production" (login.salesforce.com,
-- the default) or "sandbox" (test.salesforce.com): whose users may log in here.
function _M.mount(app, prefix, environment)
  local host_env = environment or "production"
  local function route(method, path, handler)
    app:route(method, prefix .. path, faults.wrap(SERVICE, handler, fault))
  end
  route("GET", "/services/oauth2/authorize", authorize_get(host_env, prefix))
  route("POST", "/services/oauth2/authorize", authorize_post(host_env, prefix))
  route("GET", "/setup/secur/RemoteAccessErrorPage.apexp", error_page)
  route("POST", "/services/oauth2/token", token(prefix))
  route("GET", "/id/:org/:user", identity(prefix))
  for _, m in ipairs({ "GET", "POST", "PUT", "PATCH", "DELETE" }) do
    route(m, "/services/apexrest/*", apex)
  end
end

return _M
