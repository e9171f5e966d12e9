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

-- The password of each URL with credentials (scheme://user:password@host),
-- looked for after each "://" with anchored patterns: one unanchored pattern
-- starting at the scheme was tried at every letter of a long word before it
-- (8 KB of logged text took 0.5 s).
local function mask_passwords(s)
  local parts, from = {}, 1
  local at = s:find("://", 1, true)
  while at do
    local _, colon = s:find("^[^:/@%s]*:", at + 3)
    local atsign = colon and select(2, s:find("^[^@%s/]+@", colon + 1))
    if atsign then
      parts[#parts + 1] = s:sub(from, colon) .. FILTERED .. "@"
      from = atsign + 1
    end
    at = s:find("://", at + 3, true)
  end
  if from == 1 then return s end
  parts[#parts + 1] = s:sub(from)
  return table.concat(parts)
end

-- Masks secrets inside free text: the password of URLs with credentials
-- (postgres://u:pw@h -> postgres://u:[FILTERED]@h) and bearer tokens.
function _M.text(s)
  if s:find("://", 1, true) then s = mask_passwords(s) end
  if s:find("earer", 1, true) then s = s:gsub("([Bb]earer%s+)[%w%-._~+/=]+", "%1" .. FILTERED) end
  return s
end

return _M
