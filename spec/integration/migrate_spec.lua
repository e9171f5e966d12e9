-- mc.migrate and `multiconnect migrate` against a private database on the test
-- server (mc_migrate_spec, created here and dropped after), with migrations in
-- a scratch directory of their own.
local pg = require "mc.pg"
local migrate = require "mc.migrate"
local proc = require "support.process"
local pg_db = require "support.pg_db"

local DB = "mc_migrate_spec"

describe("migrate", function()
  local url, conn, dir, cleanup

  local function write(name, sql) proc.write(dir .. "/" .. name, sql) end

  local function versions()
    local out = {}
    for _, r in ipairs(assert(conn:query("SELECT version FROM schema_migrations ORDER BY version"))) do
      out[#out + 1] = r.version
    end
    return out
  end

  local function exists(tbl)
    return assert(conn:query("SELECT to_regclass($1) IS NOT NULL AS e", tbl))[1].e
  end

  local function cli(args, env)
    env = env or {}
    if env.DATABASE_URL == nil then env.DATABASE_URL = url end
    if env.MIGRATIONS_DIR == nil then env.MIGRATIONS_DIR = dir end
    local argv = { "migrate" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return proc.mc(argv, { env = env })
  end

  setup(function() url = pg_db.create(DB) end)
  teardown(function() pg_db.drop(DB) end)

  before_each(function()
    dir, cleanup = proc.tmpdir()
    conn = assert(pg.connect(url))
    assert(conn:exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    write("001_first.sql", "CREATE TABLE first (id int PRIMARY KEY);\nINSERT INTO first VALUES (1);\n")
    write("002_second.sql", "-- a comment first\nCREATE TABLE second (id int);\n")
    write("README.txt", "not a migration: ignored")
  end)

  after_each(function()
    conn:close()
    cleanup()
  end)

  it("applies the files in order, records them, and applies nothing on a re-run", function()
    local done = assert(migrate.run(conn, dir))
    assert.same({ 1, 2 }, { done[1].version, done[2].version })
    assert.equal("001_first.sql", done[1].name)
    assert.same({ 1, 2 }, versions())
    assert.is_true(exists("first"))
    local row = assert(conn:query("SELECT name, checksum, applied_at FROM schema_migrations WHERE version = 1"))[1]
    assert.equal("001_first.sql", row.name)
    assert.matches("^%x+$", row.checksum)
    assert.equal(64, #row.checksum)
    assert.matches("^%d%d%d%d%-", row.applied_at)

    assert.same({}, assert(migrate.run(conn, dir)))
    assert.equal(1, #assert(conn:query("SELECT * FROM first")))
  end)

  it("applies a new file alone", function()
    assert(migrate.run(conn, dir))
    write("010_third.sql", "ALTER TABLE first ADD COLUMN note text;")
    local done = assert(migrate.run(conn, dir))
    assert.equal(1, #done)
    assert.equal("010_third.sql", done[1].name)
    assert.same({ 1, 2, 10 }, versions())
    assert.equal(1, #assert(conn:query("SELECT * FROM first"))) -- 001 did not run again
  end)

  it("rolls a failing file back entirely and runs nothing after it", function()
    write("002_second.sql", "CREATE TABLE second (id int);\nINSERT INTO second VALUES (1/0);\n")
    write("003_third.sql", "CREATE TABLE third (id int);")
    local done, err = migrate.run(conn, dir)
    assert.is_nil(done)
    assert.matches("002_second.sql: division by zero (SQLSTATE 22012)", err, 1, true)
    assert.is_false(exists("second"))
    assert.is_false(exists("third"))
    assert.same({ 1 }, versions())
    -- the lock went with the run: a fixed file applies
    write("002_second.sql", "CREATE TABLE second (id int);")
    assert.equal(2, #assert(migrate.run(conn, dir)))
    assert.is_true(exists("third"))
  end)

  it("refuses to run when an applied file changed, naming it, and applies nothing", function()
    assert(migrate.run(conn, dir))
    write("001_first.sql", "CREATE TABLE first (id bigint PRIMARY KEY);")
    write("003_third.sql", "CREATE TABLE third (id int);")
    local done, err = migrate.run(conn, dir)
    assert.is_nil(done)
    assert.matches("^001_first%.sql: changed since it was applied", err)
    assert.is_false(exists("third"))
    local r = cli()
    assert.equal(1, r.code)
    assert.matches("001_first.sql: changed", r.stderr, 1, true)
  end)

  it("refuses misnamed files and duplicate versions", function()
    write("2_other.sql", "SELECT 1;")
    local done, err = migrate.run(conn, dir)
    assert.is_nil(done)
    assert.matches("two migrations with version 2", err, 1, true)
    os.remove(dir .. "/2_other.sql")
    write("003-third.sql", "SELECT 1;")
    done, err = migrate.run(conn, dir)
    assert.is_nil(done)
    assert.matches("003-third.sql: a migration is named NNN_name.sql", err, 1, true)
    assert.is_false(exists("first"))
  end)

  it("refuses, before running anything, a file with its own BEGIN, COMMIT or ROLLBACK", function()
    assert(migrate.run(conn, dir))
    write("003_commit.sql", "CREATE TABLE third (id int);\ncommit;")
    local done, err = migrate.run(conn, dir)
    assert.is_nil(done)
    assert.matches("003_commit.sql: contains COMMIT; each migration runs in a transaction of its own", err, 1, true)
    assert.is_false(exists("third"))
    assert.same({ 1, 2 }, versions())
  end)

  it("tells transaction control from the same words in bodies, strings and comments", function()
    local words = migrate.statement_words([[
      -- BEGIN; in a comment
      /* COMMIT; /* nested */ ROLLBACK; */
      CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$;
      DO $$ BEGIN PERFORM 1; END $$;
      INSERT INTO t VALUES ('it''s; COMMIT'), ($q$x$q$);
      SELECT "begin;" FROM t;
      START TRANSACTION;
      end;
    ]])
    assert.same({ "create", "do", "insert", "select", "start", "end" }, words)
    write("003_plpgsql.sql", "CREATE FUNCTION one() RETURNS int LANGUAGE plpgsql AS $$\n"
      .. "BEGIN\n  RETURN 1;\nEND\n$$;\nDO $$ BEGIN PERFORM one(); END $$;\n")
    assert.equal(3, #assert(migrate.run(conn, dir)))
    assert.equal(1, assert(conn:query("SELECT one() AS v"))[1].v)
  end)

  it("from 4 processes at once applies each file exactly once, and all exit 0", function()
    -- pg_sleep keeps the first run inside its lock while the others start
    write("003_slow.sql", "SELECT pg_sleep(0.5); CREATE TABLE slow (id int);")
    write("004_count.sql", "CREATE TABLE runs (n int); INSERT INTO runs VALUES (1);")
    local outs, cmds = {}, {}
    for i = 1, 4 do
      outs[i] = os.tmpname()
      cmds[i] = string.format("env DATABASE_URL=%s MIGRATIONS_DIR=%s %s migrate >%s 2>&1; echo $? >>%s",
        proc.quote(url), proc.quote(dir), proc.quote(proc.exe), outs[i], outs[i])
    end
    local script = {}
    for i = 1, 4 do script[i] = "(" .. cmds[i] .. ") &" end
    script[5] = "wait"
    assert(os.execute(table.concat(script, "\n")))
    local applied_lines = 0
    for i = 1, 4 do
      local f = assert(io.open(outs[i]))
      local text = f:read("a")
      f:close()
      os.remove(outs[i])
      assert.matches("0\n$", text)
      for _ in text:gmatch('msg="migration applied"') do applied_lines = applied_lines + 1 end
    end
    assert.equal(4, applied_lines) -- four files, each applied by one process
    assert.same({ 1, 2, 3, 4 }, versions())
    assert.equal(1, #assert(conn:query("SELECT * FROM runs")))
  end)

  it("status lists each file as applied (when) or pending", function()
    local r = cli({ "status" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("001_first.sql%s+pending\n002_second.sql%s+pending\n", r.stdout)
    assert.is_false(exists("schema_migrations")) -- status changes nothing
    r = cli()
    assert.equal(0, r.code, r.stderr)
    assert.matches('msg="migration applied".*file=001_first%.sql', r.stdout)
    write("003_third.sql", "SELECT 1;")
    r = cli({ "status" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("001_first.sql%s+applied %d%d%d%d%-%d%d%-%d%dT[%d:.]+Z\n", r.stdout)
    assert.matches("003_third.sql%s+pending\n", r.stdout)
    local list = assert(migrate.status(conn, dir))
    assert.same({ "applied", "applied", "pending" }, { list[1].state, list[2].state, list[3].state })
  end)

  it("exits 1 on a bad DATABASE_URL without echoing the password", function()
    local r = cli({}, { DATABASE_URL = "postgres://mc:hunter2secret@127.0.0.1:1/" .. DB })
    assert.equal(1, r.code)
    assert.matches("multiconnect migrate: DATABASE_URL: ", r.stderr, 1, true)
    assert.is_nil(r.stderr:find("hunter2secret", 1, true), r.stderr)
    assert.is_nil(r.stdout:find("hunter2secret", 1, true), r.stdout)
    r = cli({}, { DATABASE_URL = false })
    assert.equal(1, r.code)
    assert.matches("DATABASE_URL is not set", r.stderr, 1, true)
  end)

  it("exits 1 for a missing directory and 2 for a bad argument", function()
    local r = cli({}, { MIGRATIONS_DIR = dir .. "/nope" })
    assert.equal(1, r.code)
    assert.matches("nope: no such directory", r.stderr, 1, true)
    assert.equal(2, cli({ "sideways" }).code)
  end)
end)
