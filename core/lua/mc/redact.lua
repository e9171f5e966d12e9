-- mc.redact: the one place that decides what is a secret, so that neither logs
-- nor configuration errors ever print one.
local _M = {}

local FILTERED = "[FILTERED]"
_M.FILTERED = FILTERED

-- Key names (lower-cased, any separator) whose values are always secret.
local SECRET_WORDS = {
  "password", "passwd", "secret", "token", "apikey", "api_key", "authorization",
  "cookie", "signature", "credential", "private_key", "encryption_key", "session",
}

-- Answers are remembered per key name (log lines repeat the same few keys); the
-- memo is dropped when it grows past MEMO_MAX, so odd keys cannot grow it forever.
local MEMO_MAX = 512
local memo, memo_size = {}, 0

local function secret_key(name)
  local k = string.lower(tostring(name))
  if k == "key" or k:match("_key$") or k:match("^key_") then return true end
  for _, word in ipairs(SECRET_WORDS) do
    if k:find(word, 1, true) then return true end
  end
  return false
end

function _M.is_secret_key(name)
  local v = memo[name]
  if v ~= nil then return v end
  v = secret_key(name)
  if memo_size >= MEMO_MAX then memo, memo_size = {}, 0 end
  memo[name], memo_size = v, memo_size + 1
  return v
end

-- Masks secrets inside free text: the password of URLs with credentials
-- (postgres://u:pw@h -> postgres://u:[FILTERED]@h) and bearer tokens.
function _M.text(s)
  -- most values hold neither: skip the patterns (they backtrack on every value)
  if not (s:find("://", 1, true) or s:find("earer", 1, true)) then return s end
  s = s:gsub("(%a[%w+.-]*://[^:/@%s]*:)[^@%s/]+@", "%1" .. FILTERED .. "@")
  s = s:gsub("([Bb]earer%s+)[%w%-._~+/=]+", "%1" .. FILTERED)
  return s
end

return _M
