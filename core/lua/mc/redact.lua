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

function _M.is_secret_key(name)
  local k = string.lower(tostring(name))
  if k == "key" or k:match("_key$") or k:match("^key_") then return true end
  for _, word in ipairs(SECRET_WORDS) do
    if k:find(word, 1, true) then return true end
  end
  return false
end

-- Masks secrets inside free text: the password of URLs with credentials
-- (postgres://u:pw@h -> postgres://u:[FILTERED]@h) and bearer tokens.
function _M.text(s)
  s = s:gsub("(%a[%w+.-]*://[^:/@%s]*:)[^@%s/]+@", "%1" .. FILTERED .. "@")
  s = s:gsub("([Bb]earer%s+)[%w%-._~+/=]+", "%1" .. FILTERED)
  return s
end

return _M
