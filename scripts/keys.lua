-- keys: the stored tokens under ENCRYPTION_KEYS, for `multiconnect keys status`
-- and `multiconnect keys rotate` (core/lua/mc/main.lua calls main(args)).
-- Rotation: put a new key first in ENCRYPTION_KEYS (`keys new`), deploy (every
-- process then seals with it and still opens with the old), `keys rotate`
-- (re-seals every token still under another key), `keys status` (nothing left
-- under the old key), then drop the old key from ENCRYPTION_KEYS.
--   keys.status(db, ring) -> { by_kid = {kid = n}, total, unreadable } | nil, err
--   keys.rotate(db, ring, {batch, progress = fn(done, total)}) -> {rotated, failed, total} | nil, err
-- ring is an mc.crypto keyring (the process's ENCRYPTION_KEYS in main). Each
-- batch is one transaction holding its rows' locks, so a token refreshed
-- meanwhile is never overwritten by its old value; a run cut short is resumed
-- by running it again (it picks what is not yet under the first key).
local config = require "config"
local crypto = require "mc.crypto"
local json = require "mc.json"
local db = require "lib.db"
local orgs = require "onboarding.orgs"
local salesforce = require "clients.salesforce"

local _M = {}

local function kid_of(token) return type(token) == "string" and token:match("^v%d+%.([%w_%-]+)%.") end

-- status: every sealed token counted by the key id that seals it; unreadable:
-- those the ring cannot open (a key missing from it, a damaged token).
function _M.status(conn, ring)
  local rows, err = conn:query("SELECT org_id, access_token, refresh_token FROM organizations ORDER BY id")
  if not rows then return nil, err end
  local out = { by_kid = {}, total = 0, unreadable = 0 }
  for _, row in ipairs(rows) do
    for _, col in ipairs(salesforce.SEALED) do
      local token = row[col]
      if type(token) == "string" then
        local kid = kid_of(token) or "?"
        out.by_kid[kid] = (out.by_kid[kid] or 0) + 1
        out.total = out.total + 1
        if not ring:open(token, salesforce.context(row, col)) then out.unreadable = out.unreadable + 1 end
      end
    end
  end
  return out
end

-- The next batch of orgs with a token not under kid, after id `after`, locked.
local NEXT = [[SELECT id, org_id, access_token, refresh_token FROM organizations
  WHERE id > $1 AND (split_part(access_token, '.', 2) <> $2 OR split_part(refresh_token, '.', 2) <> $2)
  ORDER BY id LIMIT $3 FOR UPDATE]]

local function reseal(conn, ring, row, kid, tally)
  local fields = {}
  for _, col in ipairs(salesforce.SEALED) do
    local token = row[col]
    if type(token) == "string" and kid_of(token) ~= kid then
      local plain = ring:open(token, salesforce.context(row, col))
      if plain then
        fields[col] = ring:seal(plain, salesforce.context(row, col))
        tally.rotated = tally.rotated + 1
      else
        tally.failed = tally.failed + 1
      end
    end
  end
  if next(fields) == nil then return true end
  return orgs.update(conn, row.org_id, fields)
end

-- One batch in one transaction -> the last id seen | false (none left) | nil, err
local function batch(conn, ring, kid, after, size, tally)
  local last = false
  local ok, err = conn:transaction(function()
    local rows, qerr = conn:query(NEXT, after, kid, size)
    if not rows then return nil, qerr end
    for _, row in ipairs(rows) do
      local saved, uerr = reseal(conn, ring, row, kid, tally)
      if not saved then return nil, uerr end
      last = row.id
    end
    return true
  end)
  if not ok then return nil, err end
  return last
end

function _M.rotate(conn, ring, opts)
  opts = opts or {}
  local kid = ring:seal("", nil):match("^v%d+%.([%w_%-]+)%.") -- the sealing key: the ring's first
  local before, serr = _M.status(conn, ring)
  if not before then return nil, serr end
  local tally = { rotated = 0, failed = 0, total = before.total - (before.by_kid[kid] or 0), kid = kid }
  local after = 0
  repeat
    local last, err = batch(conn, ring, kid, after, opts.batch or 100, tally)
    if last == nil then return nil, err end
    if last then after = last end
    if last and opts.progress then opts.progress(tally) end
  until not last
  return tally
end

-- ---- the command line ------------------------------------------------------

local function ring_and_conn()
  local spec = config.get("ENCRYPTION_KEYS")
  if not spec then return nil, "ENCRYPTION_KEYS is not set" end
  local ring, err = crypto.keyring(spec)
  if not ring then return nil, "ENCRYPTION_KEYS: " .. err end
  local conn, cerr = db.conn()
  if not conn then return nil, cerr end
  return ring, conn
end

local function print_status(s, as_json)
  if as_json then return print(json.encode(s)) end
  local kids = {}
  for kid in pairs(s.by_kid) do kids[#kids + 1] = kid end
  table.sort(kids)
  for _, kid in ipairs(kids) do print(string.format("%-32s %d", kid, s.by_kid[kid])) end
  print(string.format("%d tokens, %d unreadable with ENCRYPTION_KEYS", s.total, s.unreadable))
end

local USAGE = "usage: multiconnect keys status [--json] | keys rotate [--batch N]\n"

-- main(args) -> exit status. args: {"status"|"rotate", options...}
function _M.main(args)
  local ring, conn = ring_and_conn()
  if not ring then io.stderr:write("multiconnect keys: ", conn, "\n"); return 1 end
  if args[1] == "status" then
    local s, err = _M.status(conn, ring)
    if not s then io.stderr:write("multiconnect keys: ", err, "\n"); return 1 end
    print_status(s, args[2] == "--json")
    return s.unreadable == 0 and 0 or 1
  end
  local size = args[2] == "--batch" and math.tointeger(tonumber(args[3] or "")) or (#args == 1 and 100)
  if args[1] ~= "rotate" or not size or size < 1 then io.stderr:write(USAGE); return 2 end
  local done, err = _M.rotate(conn, ring, { batch = size, progress = function(t)
    io.stdout:write(string.format("rotated %d of %d tokens to %s\n", t.rotated, t.total, t.kid))
  end })
  if not done then io.stderr:write("multiconnect keys rotate: ", err, " (run it again to resume)\n"); return 1 end
  print(string.format("done: %d tokens re-sealed under %s, %d could not be opened",
    done.rotated, done.kid, done.failed))
  return done.failed == 0 and 0 or 1
end

return _M
