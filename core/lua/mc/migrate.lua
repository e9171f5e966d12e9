-- mc.migrate: `multiconnect migrate [status]`, the release phase. Applies the
-- files sql/NNN_name.sql in version order, each once and each in its own
-- transaction, and records them in schema_migrations (version, name, checksum,
-- applied_at). Migrations are append-only: a recorded file whose bytes changed is
-- refused before anything runs. Several processes may run at once (a release
-- phase and a developer, two dynos): a session advisory lock serialises whole
-- runs, so the later ones wait and then find nothing to do.
local lfs = require "lfs"
local crypto = require "mc.crypto"
local log = require "mc.log"
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

-- Arbitrary, fixed: every migrate process of a database takes this advisory lock
-- key (the bytes of "mcmigrat" as an int8), and nothing else of ours uses it.
_M.LOCK_KEY = 0x6d636d6967726174

local FILE_NAME = "^(%d+)_([%w_%-]+)%.sql$"

local CREATE_TABLE = [[
CREATE TABLE IF NOT EXISTS schema_migrations (
  version     bigint PRIMARY KEY,
  name        text NOT NULL,
  checksum    text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
)]]

-- First words of the statements that end or replace our transaction. At the top
-- level of a file (outside quotes, dollar quotes and comments) BEGIN and END are
-- always transaction control; PL/pgSQL's BEGIN lives inside a quoted body.
local TRANSACTION_CONTROL = {
  begin = true, commit = true, rollback = true, ["end"] = true, abort = true, start = true,
}

-- statement_words(sql) -> array of each top-level statement's first word, lower-cased.
-- A small lexer, just enough to skip what may hide a semicolon or a keyword.
local function statement_words(sql)
  local words, i, n, at_start = {}, 1, #sql, true
  while i <= n do
    local c = sql:sub(i, i)
    local two = sql:sub(i, i + 1)
    if two == "--" then
      i = (sql:find("\n", i, true) or n) + 1
    elseif two == "/*" then
      local depth, j = 1, i + 2 -- Postgres block comments nest
      while depth > 0 and j <= n do
        local t = sql:sub(j, j + 1)
        if t == "/*" then depth, j = depth + 1, j + 2
        elseif t == "*/" then depth, j = depth - 1, j + 2
        else j = j + 1 end
      end
      i = j
    elseif c == "'" or c == '"' then
      local j = i + 1
      while j <= n do
        if sql:sub(j, j) == c then
          if sql:sub(j + 1, j + 1) == c then j = j + 2 else break end
        else j = j + 1 end
      end
      i, at_start = j + 1, false
    elseif c == "$" and (sql:find("^%$%$", i) or sql:find("^%$[%a_][%w_]*%$", i)) then
      local tag = sql:match("^%$%$", i) or sql:match("^%$[%a_][%w_]*%$", i)
      local close = sql:find(tag, i + #tag, true)
      i, at_start = (close and close + #tag) or n + 1, false
    elseif c == ";" then
      i, at_start = i + 1, true
    elseif c:find("%s") then
      i = i + 1
    else
      if at_start then words[#words + 1] = (sql:match("^[%a_]+", i) or c):lower() end
      i, at_start = i + 1, false
    end
  end
  return words
end
_M.statement_words = statement_words

local function controls_transaction(sql)
  for _, w in ipairs(statement_words(sql)) do
    if TRANSACTION_CONTROL[w] then return w:upper() end
  end
end

-- files(dir) -> array of {version, name, path, sql, checksum} in version order
-- | nil, err. A *.sql file whose name does not fit NNN_name.sql, and two files
-- of one version, are errors rather than silently skipped: either would leave a
-- migration unapplied without anyone noticing.
function _M.files(dir)
  if type(dir) ~= "string" then
    error("bad argument #1 to 'files' (string expected, got " .. type(dir) .. ")", 2)
  end
  if lfs.attributes(dir, "mode") ~= "directory" then
    return nil, dir .. ": no such directory"
  end
  local out, by_version = {}, {}
  for entry in lfs.dir(dir) do
    if entry:find("%.sql$") then
      local digits = entry:match(FILE_NAME)
      local version = digits and math.tointeger(tonumber(digits))
      if not version then
        return nil, entry .. ": a migration is named NNN_name.sql (name: letters, digits, _ or -)"
      end
      if by_version[version] then
        return nil, string.format("%s and %s: two migrations with version %d", by_version[version], entry, version)
      end
      by_version[version] = entry
      local path = dir .. "/" .. entry
      local sql, err = file.read(path)
      if not sql then return nil, err end
      local control = controls_transaction(sql)
      if control then
        return nil, entry .. ": contains " .. control .. "; each migration runs in a transaction of its own"
      end
      out[#out + 1] = { version = version, name = entry, path = path, sql = sql,
        checksum = crypto.to_hex(crypto.sha256(sql)) }
    end
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

-- version -> {name, checksum, applied_at}; empty when the table does not exist yet
local function recorded(conn)
  local rows, err, state = conn:query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
  if not rows then return nil, err, state end
  local out = {}
  if not rows[1].present then return out end
  rows, err, state = conn:query("SELECT version, name, checksum, applied_at FROM schema_migrations")
  if not rows then return nil, err, state end
  for _, r in ipairs(rows) do out[r.version] = r end
  return out
end

local function drifted(files, applied)
  for _, f in ipairs(files) do
    local r = applied[f.version]
    if r and r.checksum ~= f.checksum then
      return string.format("%s: changed since it was applied at %s (checksum %s, recorded %s);"
        .. " migrations are append-only: restore the file and add a new migration",
        f.name, r.applied_at, f.checksum:sub(1, 12), r.checksum:sub(1, 12))
    end
  end
end

-- One migration in its own transaction. The transaction-scoped lock is already
-- ours while the session lock is held; it matters when mc.pg reconnected after a
-- dropped connection (which lost the session lock): then it waits for whoever
-- holds the lock and the check below finds the file applied by them.
local function apply(conn, f)
  return conn:transaction(function()
    local ok, err, state = conn:query("SELECT pg_advisory_xact_lock($1)", _M.LOCK_KEY)
    if not ok then return nil, string.format("%s (SQLSTATE %s)", err, state) end
    local rows
    rows, err, state = conn:query("SELECT checksum FROM schema_migrations WHERE version = $1", f.version)
    if not rows then return nil, string.format("%s (SQLSTATE %s)", err, state) end
    if rows[1] then return "skipped" end
    ok, err, state = conn:exec(f.sql)
    if not ok then return nil, string.format("%s (SQLSTATE %s)", err, state or "?") end
    if conn:status() ~= "intrans" then
      -- a statement the lexer missed ended the transaction: what ran before it is committed
      return nil, "the file ended the transaction; check what it left behind"
    end
    ok, err, state = conn:query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
      f.version, f.name, f.checksum)
    if not ok then return nil, string.format("%s (SQLSTATE %s)", err, state) end
    return "applied"
  end)
end

local function locked_run(conn, files)
  local ok, err, state = conn:exec(CREATE_TABLE)
  if not ok then return nil, string.format("schema_migrations: %s (SQLSTATE %s)", err, state) end
  local applied
  applied, err, state = recorded(conn)
  if not applied then return nil, string.format("schema_migrations: %s (SQLSTATE %s)", err, state) end
  local drift = drifted(files, applied)
  if drift then return nil, drift end
  local done = {}
  for _, f in ipairs(files) do
    if not applied[f.version] then
      local started = host.now()
      local result, aerr = apply(conn, f)
      if not result then
        return nil, string.format("%s: %s; rolled back, later migrations not run", f.name, aerr)
      end
      if result == "applied" then
        done[#done + 1] = { version = f.version, name = f.name, checksum = f.checksum }
        log.info("migration applied", { file = f.name, duration_ms = math.floor((host.now() - started) * 1000) })
      end
    end
  end
  return done
end

-- migrate.run(conn, dir) -> array of {version, name, checksum} applied now (empty
-- when up to date) | nil, err. err names the file and carries Postgres's message
-- and SQLSTATE. Blocks while another run holds the lock.
function _M.run(conn, dir)
  local files, err = _M.files(dir)
  if not files then return nil, err end
  local rows, lerr, state = conn:query("SELECT pg_try_advisory_lock($1) AS got", _M.LOCK_KEY)
  if not rows then return nil, string.format("advisory lock: %s (SQLSTATE %s)", lerr, state) end
  if not rows[1].got then
    log.info("waiting for another migrate to finish")
    rows, lerr, state = conn:query("SELECT pg_advisory_lock($1)", _M.LOCK_KEY)
    if not rows then return nil, string.format("advisory lock: %s (SQLSTATE %s)", lerr, state) end
  end
  local ok, done, rerr = pcall(locked_run, conn, files)
  conn:query("SELECT pg_advisory_unlock($1)", _M.LOCK_KEY)
  if not ok then error(done, 0) end
  return done, rerr
end

-- migrate.status(conn, dir) -> array of {version, name, state, applied_at?} in
-- version order, state one of "applied", "pending", "changed" (applied, but the
-- file differs now), "missing" (recorded, no file: a rolled-back release) | nil, err.
-- Read only: it neither locks nor creates anything.
function _M.status(conn, dir)
  local files, err = _M.files(dir)
  if not files then return nil, err end
  local applied, rerr, state = recorded(conn)
  if not applied then return nil, string.format("schema_migrations: %s (SQLSTATE %s)", rerr, state) end
  local out, seen = {}, {}
  for _, f in ipairs(files) do
    local r = applied[f.version]
    seen[f.version] = true
    out[#out + 1] = { version = f.version, name = f.name, applied_at = r and r.applied_at,
      state = not r and "pending" or (r.checksum == f.checksum and "applied" or "changed") }
  end
  for version, r in pairs(applied) do
    if not seen[version] then
      out[#out + 1] = { version = version, name = r.name, applied_at = r.applied_at, state = "missing" }
    end
  end
  table.sort(out, function(a, b) return a.version < b.version end)
  return out
end

-- ---- the command ---------------------------------------------------------------

local USAGE = [[
usage: multiconnect migrate [status]

  (no argument)  apply the pending migrations of $MIGRATIONS_DIR in order, each
                 in its own transaction; exit 1 naming the file if one fails or if
                 an applied file changed
  status         list each migration as applied (when), pending, changed or missing

environment: DATABASE_URL, MIGRATIONS_DIR (default $MC_ROOT/sql)
]]

local function fail(err)
  io.stderr:write("multiconnect migrate: ", tostring(err), "\n")
  return 1
end

local function print_status(list)
  local width = 0
  for _, m in ipairs(list) do width = math.max(width, #m.name) end
  for _, m in ipairs(list) do
    local line = string.format("%-" .. width .. "s  %s", m.name, m.state)
    if m.applied_at then line = line .. " " .. m.applied_at end
    print(line)
  end
  if #list == 0 then print("no migrations") end
end

function _M.main(args)
  local sub = args[1]
  if #args > 1 or (sub ~= nil and sub ~= "status") then
    io.stderr:write(USAGE)
    return 2
  end
  local url = os.getenv("DATABASE_URL")
  if not url or url == "" then return fail("DATABASE_URL is not set") end
  local dir = os.getenv("MIGRATIONS_DIR")
  if not dir or dir == "" then dir = host.root .. "/sql" end
  local conn, err = require("mc.pg").connect(url)
  if not conn then return fail("DATABASE_URL: " .. err) end
  if sub == "status" then
    local list, serr = _M.status(conn, dir)
    conn:close()
    if not list then return fail(serr) end
    print_status(list)
    return 0
  end
  local done, rerr = _M.run(conn, dir)
  conn:close()
  if not done then return fail(rerr) end
  log.info("migrations up to date", { applied = #done })
  return 0
end

return _M
