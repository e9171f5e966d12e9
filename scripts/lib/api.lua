-- lib.api: one HTTP call to an external API, with its outcome classified the way
-- the onboarding workflow needs it:
--   api.call{service = "heroku", method, url, headers, json | body | form, timeout}
--     -> res (2xx..4xx the caller expects, see `ok`) | nil, err, retryable, res
-- `retryable` is true for what a later attempt may fix (transport errors and
-- timeouts, 408, 429, 5xx) and false for the rest (a 400 or a 401 stays wrong
-- until a person fixes it). When the service said how long to wait (a 429 or
-- 503 with Retry-After), `retryable` is that number of seconds instead: still
-- true to a plain test, and the least delay a retry may use (api.wait_of).
-- `ok` is a set of statuses the caller accepts besides 2xx (e.g. {[404] = true}
-- when "not there yet" is an answer, not a failure).
local http = require "mc.http"
local host = require "mc.host"
local log = require "mc.log"

local _M = {}

local DEFAULT_TIMEOUT = 20

-- Longest Retry-After honoured: a service asking for more is retried after this.
local MAX_RETRY_AFTER = 3600

-- Retry-After in seconds (RFC 9110 delta-seconds; an HTTP-date counts as absent)
local function asked_wait(res)
  local after = tonumber((res.headers or {})["retry-after"]) -- mc.http lower-cases header names
  if not after or after < 0 then return nil end
  return math.min(after, MAX_RETRY_AFTER)
end

-- Salesforce answers its API-limit errors with 403 REQUEST_LIMIT_EXCEEDED.
local function retryable(res)
  local status = res.status
  if status == 429 or status == 503 then return asked_wait(res) or true end
  if status == 408 or status >= 500 then return true end
  return status == 403 and (res.body or ""):find("REQUEST_LIMIT_EXCEEDED", 1, true) ~= nil
end

-- wait_of(retryable) -> the seconds a service asked to wait before a retry | nil
function _M.wait_of(retryable_)
  return math.type(retryable_) and retryable_ or nil
end

-- The service's own words for a failed call, for logs and onboarding_events:
-- Heroku {"id","message"}, Connect {"message"}, Salesforce [{"errorCode","message"}],
-- OAuth {"error","error_description"}, SendGrid {"errors":[{"message"}]}.
function _M.describe(res)
  local doc = res.body ~= "" and res:json() or nil
  local text
  if type(doc) == "table" then
    local first = doc[1] or (type(doc.errors) == "table" and doc.errors[1]) or doc
    if type(first) == "table" then
      text = first.message or first.error_description or first.error or first.detail
      local code = first.errorCode or first.id or (first.error_description and first.error)
      if type(code) == "string" and type(text) == "string" then text = code .. ": " .. text end
    end
  end
  if type(text) ~= "string" then text = (res.body or ""):sub(1, 200) end
  return string.format("HTTP %d%s", res.status, text ~= "" and (" " .. text) or "")
end

function _M.call(opts)
  local started = host.now()
  local req = {}
  for k, v in pairs(opts) do req[k] = v end
  req.service, req.ok = nil, nil
  req.timeout = req.timeout or DEFAULT_TIMEOUT
  req.connect_timeout = req.connect_timeout or 10
  local res, err = http.request(req)
  local ms = math.floor((host.now() - started) * 1000 + 0.5)
  local path = (opts.url:match("^%a[%w+.-]*://[^/]*(/[^?]*)") or opts.url)
  if not res then
    log.warn("api call failed", { service = opts.service, method = opts.method, path = path, ms = ms, err = err })
    return nil, opts.service .. ": " .. err, true
  end
  log.debug("api call", { service = opts.service, method = opts.method, path = path, status = res.status, ms = ms })
  if res.status < 300 or (opts.ok and opts.ok[res.status]) then return res end
  return nil, opts.service .. ": " .. _M.describe(res), retryable(res), res
end

-- Seconds to wait before retrying after res (Retry-After, RateLimit reset), or nil.
function _M.retry_after(res)
  if not res then return nil end
  local h = res.headers or {}
  local after = tonumber(h["retry-after"]) -- mc.http lower-cases header names
  if after then return after end
  local reset = tonumber(h["x-ratelimit-reset"] or h["x-rate-limit-reset"])
  if reset and reset > host.time() then return reset - host.time() end
  return nil
end

return _M
