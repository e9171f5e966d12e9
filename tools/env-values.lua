-- bin/multiconnect run tools/env-values.lua NAME... -> `NAME='value'` lines, for
-- a shell's eval, of each name the environment or $MC_ROOT/.env sets (read by
-- the binary's own .env reader; the environment wins). Used by tools/dev and
-- tools/callback.
for _, name in ipairs(arg) do
  local v = os.getenv(name)
  if v then print(name .. "='" .. v:gsub("'", "'\\''") .. "'") end
end
