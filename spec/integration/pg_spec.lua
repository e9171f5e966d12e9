-- mc.pg against the real Postgres in DATABASE_URL (temp tables only), and a
-- private server of its own for the reconnect tests.
local pg = require "mc.pg"
local host = require "mc.host"
local proc = require "support.process"

local null = mc.null

local SSL_IN_USE = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"

-- A server that answers libpq's SSLRequest with "N" (no TLS here), as a
-- Postgres with ssl=off does; it writes its port to the file named by arg[1].
local NO_TLS_SERVER = [[
local socket = require "socket"
local s = assert(socket.bind("127.0.0.1", 0))
local f = assert(io.open(arg[1] .. ".tmp", "w"))
f:write(select(2, s:getsockname()), "\n")
f:close()
os.rename(arg[1] .. ".tmp", arg[1])
s:settimeout(15)
local c = s:accept()
if c then
  c:settimeout(5)
  c:receive(8)
  c:send("N")
  c:receive("*a")
  c:close()
end
]]

describe("mc.pg", function()
  local conn
  before_each(function() conn = assert(pg.connect()) end)
  after_each(function() conn:close() end)

  local function one(sql, ...)
    local rows = assert(conn:query(sql, ...))
    return rows[1]
  end

  describe("connect", function()
    it("uses DATABASE_URL and runs with ISO dates in UTC", function()
      assert.matches("^mc%.pg%.conn %(127%.0%.0%.1:%d+/", tostring(conn))
      local r = one("select current_setting('DateStyle') as ds, current_setting('TimeZone') as tz,"
        .. " current_setting('standard_conforming_strings') as scs")
      assert.same({ ds = "ISO, MDY", tz = "UTC", scs = "on" }, r)
    end)

    it("answers nil, err for a refused port, a bad URL and a bad password, without the password", function()
      local c, err = pg.connect("postgres://u:hunter2@127.0.0.1:1/db")
      assert.is_nil(c)
      assert.equal("connection refused", err)
      c, err = pg.connect("postgresql://u:hunter2@127.0.0.1:1/db?bogus_option=1")
      assert.is_nil(c)
      assert.matches("bogus_option", err, 1, true)
      c, err = pg.connect("postgres://u:hun%zzter2@127.0.0.1:1/db")
      assert.is_nil(c)
      assert.is_nil(err:find("hun", 1, true), err)
    end)

    it("takes connect_timeout and sslmode from the URL", function()
      local url = os.getenv("DATABASE_URL")
      local sep = url:find("?", 1, true) and "&" or "?"
      local c = assert(pg.connect(url .. sep .. "sslmode=disable&connect_timeout=3&application_name=spec"))
      assert.equal("spec", assert(c:query("select current_setting('application_name') as a"))[1].a)
      assert.is_false(assert(c:query(SSL_IN_USE))[1].ssl)
      c:close()
    end)

    -- Heroku Postgres takes TLS only and DATABASE_URL may say sslmode=require;
    -- tools/services runs the local server with ssl=on and a self-signed
    -- certificate, which require (unlike verify-full) accepts, as on Heroku.
    it("connects over TLS with sslmode=require", function()
      local url = os.getenv("DATABASE_URL")
      local sep = url:find("?", 1, true) and "&" or "?"
      local c = assert(pg.connect(url .. sep .. "sslmode=require"))
      assert.is_true(assert(c:query(SSL_IN_USE))[1].ssl)
      c:close()
    end)

    it("refuses a server without TLS when sslmode=require, saying so", function()
      local dir, cleanup = proc.tmpdir()
      local script = proc.write(dir .. "/no_tls.lua", NO_TLS_SERVER)
      os.execute(string.format("%s run %s %s >%s 2>&1 &", proc.quote(proc.exe), proc.quote(script),
        proc.quote(dir .. "/port"), proc.quote(dir .. "/log")))
      local port = proc.wait_for(function()
        local f = io.open(dir .. "/port")
        local n = f and f:read("n")
        if f then f:close() end
        return n
      end, 10, "the no-TLS server")
      local c, err = pg.connect("postgres://u:secret@127.0.0.1:" .. port .. "/db?sslmode=require&connect_timeout=5")
      cleanup()
      assert.is_nil(c)
      assert.matches("server does not support SSL, but SSL was required", err, 1, true)
      assert.is_nil(err:find("secret", 1, true))
    end)

    it("raises when no URL is given and DATABASE_URL is unset", function()
      local dir, cleanup = proc.tmpdir()
      proc.write(dir .. "/c.lua", "require('mc.pg').connect()")
      local r = proc.mc({ "run", dir .. "/c.lua" }, { env = { DATABASE_URL = false } })
      cleanup()
      assert.equal(1, r.code)
      assert.matches("DATABASE_URL is not set", r.stderr, 1, true)
    end)
  end)

  describe("types", function()
    it("maps integers, floats, numerics and booleans", function()
      local r = one("select 1::int2 as a, 2::int4 as b, 9007199254740993::int8 as c, 1.5::float4 as d,"
        .. " 0.1::float8 as e, 12.50::numeric as f, 123456789012345678901234.5::numeric as g,"
        .. " true as h, false as i, 42::numeric as j")
      assert.same({ a = 1, b = 2, c = 9007199254740993, d = 1.5, e = 0.1, f = 12.5,
        g = "123456789012345678901234.5", h = true, i = false, j = 42 }, r)
      assert.equal("integer", math.type(r.c))
      assert.equal("integer", math.type(r.j))
    end)

    it("maps text, json, timestamps and NULL", function()
      local r = one([[select 'x'::text as t, 'y'::varchar as v, 'z'::char(2) as c,
        '{"a":[1,{"b":null}]}'::jsonb as jb, '[1,2]'::json as j, null::int as n,
        '2024-02-29 12:34:56.789+02'::timestamptz as tz, '2024-02-29 01:02:03'::timestamp as ts,
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as u]])
      assert.same({ t = "x", v = "y", c = "z ", jb = { a = { 1, { b = null } } }, j = { 1, 2 },
        n = null, tz = "2024-02-29T10:34:56.789Z", ts = "2024-02-29T01:02:03",
        u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" }, r)
    end)

    it("maps arrays, with quotes, escapes and NULLs", function()
      local r = one([==[select array[1,null,3]::int4[] as i4, array[9007199254740993]::int8[] as i8,
        array['a"b', 'c,d', 'e\f', null, 'NULL', '', ' s ']::text[] as t,
        array[true,false]::bool[] as b, array[1.5,null]::float8[] as f,
        array['{"k":1}']::jsonb[] as jb, array[[1,2],[3,4]]::int4[] as m,
        '{}'::int4[] as e]==])
      assert.same({ i4 = { 1, null, 3 }, i8 = { 9007199254740993 },
        t = { 'a"b', "c,d", "e\\f", null, "NULL", "", " s " }, b = { true, false },
        f = { 1.5, null }, jb = { { k = 1 } }, m = { { 1, 2 }, { 3, 4 } }, e = {} }, r)
    end)

    it("lets a script add or replace a decoder by OID", function()
      local saved = pg.decoders[pg.OID.uuid]
      pg.decoders[pg.OID.uuid] = function(s) return "uuid:" .. s end
      local ok, r = pcall(one, "select '00000000-0000-0000-0000-000000000001'::uuid as u,"
        .. " array['00000000-0000-0000-0000-000000000002']::uuid[] as us")
      pg.decoders[pg.OID.uuid] = saved
      assert.is_true(ok, r)
      assert.same({ u = "uuid:00000000-0000-0000-0000-000000000001",
        us = { "uuid:00000000-0000-0000-0000-000000000002" } }, r)
    end)
  end)

  describe("query", function()
    it("sends parameters as values, never as SQL", function()
      local tricky = "it's \"quoted\" \\ back\\slash; drop table x; -- é 日本 \u{1F600} \t\n\r"
      local r = one("select $1::text as s, $2::int8 as i, $3::float8 as f, $4::bool as b,"
        .. " $5::text is null as n1, $6::int is null as n2, $7::jsonb as j, $8::text as lit",
        tricky, math.maxinteger, 0.1, false, nil, null, { a = { 1, 2 } }, "$1")
      assert.same({ s = tricky, i = math.maxinteger, f = 0.1, b = false, n1 = true, n2 = true,
        j = { a = { 1, 2 } }, lit = "$1" }, r)
    end)

    it("sends integral floats so an int parameter takes them", function()
      assert.equal(3, one("select $1::int as v", 3.0).v)
    end)

    it("raises on parameters it cannot send", function()
      assert.has_error(function() conn:query("select $1::text", "a\0b") end)
      assert.has_error(function() conn:query("select $1::text", print) end)
      assert.has_error(function() conn:query({}) end)
    end)

    it("raises on SQL text with a NUL byte (libpq would run what comes before it)", function()
      local function refused(fn)
        local ok, err = pcall(fn)
        assert.is_false(ok)
        assert.matches("SQL text contains a NUL byte", err, 1, true)
      end
      refused(function() conn:query("select 1 as one\0; drop table x") end)
      refused(function() conn:exec("select 1\0") end)
      refused(function() conn:copy_in("copy x from stdin\0", {}) end)
      assert.equal(1, one("select 1 as one").one)
    end)

    it("returns rows with columns and the affected count", function()
      assert(conn:exec("create temp table t (id int primary key, name text)"))
      local rows = assert(conn:query("insert into t values (1, 'a'), (2, 'b')"))
      assert.equal(2, rows.affected)
      assert.equal(0, #rows)
      rows = assert(conn:query("update t set name = upper(name) where id > $1 returning id, name", 0))
      assert.equal(2, rows.affected)
      assert.same({ "id", "name" }, rows.columns)
      table.sort(rows, function(x, y) return x.id < y.id end)
      assert.same({ id = 1, name = "A" }, rows[1])
      assert.is_nil(assert(conn:query("create temp table u (x int)")).affected)
    end)

    it("answers nil, err, sqlstate for SQL errors and stays usable", function()
      local rows, err, state = conn:query("select * from no_such_table")
      assert.is_nil(rows)
      assert.equal('relation "no_such_table" does not exist', err)
      assert.equal("42P01", state)
      assert(conn:exec("create temp table k (id int primary key)"))
      assert(conn:query("insert into k values ($1)", 1))
      rows, err, state = conn:query("insert into k values ($1)", 1)
      assert.is_nil(rows)
      assert.matches('duplicate key value violates unique constraint "k_pkey"', err, 1, true)
      assert.matches("Key (id)=(1) already exists", err, 1, true)
      assert.equal("23505", state)
      assert.equal(1, one("select 1 as one").one)
    end)

    it("exec runs several statements and returns the last one's rows", function()
      local rows = assert(conn:exec("create temp table m (x int); insert into m values (1), (2);"
        .. " select count(*)::int as n from m"))
      assert.equal(2, rows[1].n)
      local none, err, state = conn:exec("select 1; select nonsense")
      assert.is_nil(none)
      assert.equal("42703", state, err)
    end)

    it("sends floats with the fewest digits that read back the same", function()
      local r = one("select $1::numeric::text as a, $2::float8 as b, $3::text as c, $4::text as d",
        0.1, 1 / 3, 2.5e-7, 1e300)
      assert.same({ a = "0.1", b = 1 / 3, c = "2.5e-07", d = "1e+300" }, r)
      math.randomseed(42)
      for _ = 1, 2000 do
        local v = (math.random() - 0.5) * 10 ^ math.random(-14, 20)
        local back = one("select $1::text as t", v).t
        assert.equal(v, tonumber(back), back)
      end
    end)

    it("prepares statements once and re-prepares them when the server dropped or outdated them", function()
      assert(conn:exec("create temp table pc (a int)"))
      assert(conn:query("insert into pc values ($1)", 1))
      assert.same({ a = 1 }, one("select * from pc where a = $1", 1))
      local n = #assert(conn:query("select name from pg_prepared_statements"))
      assert.is_true(n >= 2)
      assert(conn:exec("alter table pc add column b text default 'x'"))
      assert.same({ a = 1, b = "x" }, one("select * from pc where a = $1", 1)) -- 0A000, re-prepared
      assert(conn:exec("discard all"))
      assert(conn:exec("create temp table pc (a int)")) -- discard all dropped it
      assert.equal(0, #assert(conn:query("select * from pc where a = $1", 1))) -- 26000, re-prepared
      for i = 1, 300 do assert.equal(i, one("select " .. i .. " + $1::int as v", 0).v) end
      local prepared = one("select count(*)::int as n from pg_prepared_statements").n
      assert.is_true(prepared > 200 and prepared <= 256, prepared)
    end)

    it("prepares nothing with prepare = false", function()
      local c = assert(pg.connect(nil, { prepare = false }))
      assert.equal(2, assert(c:query("select $1::int + 1 as v", 1))[1].v)
      assert.equal(0, assert(c:query("select count(*)::int as n from pg_prepared_statements"))[1].n)
      c:close()
    end)

    it("statement_timeout cancels a slow statement (57014)", function()
      assert.is_true(conn:set_timeout(20))
      local rows, err, state = conn:query("select pg_sleep(5)")
      assert.is_nil(rows)
      assert.equal("57014", state, err)
      assert.is_true(conn:set_timeout(0))
      local c = assert(pg.connect(nil, { statement_timeout = 1234 }))
      assert.equal("1234ms", assert(c:query("show statement_timeout"))[1].statement_timeout)
      c:close()
    end)
  end)

  describe("transaction", function()
    before_each(function() assert(conn:exec("create temp table tx (v text)")) end)

    local function count()
      return one("select count(*)::int as n from tx").n
    end

    it("commits and returns fn's results", function()
      local a, b = conn:transaction(function(c)
        assert(c:query("insert into tx values ($1)", "kept"))
        return "done", 2
      end)
      assert.equal("done", a)
      assert.equal(2, b)
      assert.equal(1, count())
      assert.is_true(conn:transaction(function() end))
    end)

    it("rolls back and re-raises when fn raises", function()
      local ok, err = pcall(conn.transaction, conn, function(c)
        assert(c:query("insert into tx values ($1)", "gone"))
        error("boom", 0)
      end)
      assert.is_false(ok)
      assert.equal("boom", err)
      assert.equal(0, count())
      assert.equal("idle", conn:status())
    end)

    it("rolls back and returns nil, err when fn does", function()
      local r, err = conn:transaction(function(c)
        assert(c:query("insert into tx values ($1)", "gone"))
        return nil, "changed my mind"
      end)
      assert.is_nil(r)
      assert.equal("changed my mind", err)
      assert.equal(0, count())
    end)

    it("rolls back when a statement failed inside, even if fn ignored it", function()
      local r, err = conn:transaction(function(c)
        assert(c:query("insert into tx values ($1)", "gone"))
        c:query("select * from no_such_table")
      end)
      assert.is_nil(r)
      assert.matches("aborted", err)
      assert.equal(0, count())
    end)

    it("raises on nesting", function()
      local ok, err = pcall(conn.transaction, conn, function(c)
        c:transaction(function() end)
      end)
      assert.is_false(ok)
      assert.matches("nesting", err)
      assert.equal("idle", conn:status())
    end)
  end)

  describe("copy_in", function()
    before_each(function() assert(conn:exec("create temp table cp (id int8, name text, ok bool, f float8)")) end)

    it("loads 100,000 rows", function()
      local rows = {}
      for i = 1, 100000 do rows[i] = { i, "name " .. i, i % 2 == 0, i / 4 } end
      assert.equal(100000, assert(conn:copy_in("copy cp from stdin", rows)))
      local r = one("select count(*)::int as n, sum(id)::int8 as s, count(*) filter (where ok)::int as e,"
        .. " max(f) as f from cp")
      assert.same({ n = 100000, s = 5000050000, e = 50000, f = 25000.0 }, r)
    end)

    it("escapes tabs, newlines, backslashes and writes NULLs", function()
      local nasty = "a\tb\nc\rd\\e \\N é"
      assert.equal(3, assert(conn:copy_in("copy cp (id, name) from stdin",
        { { 1, nasty }, { 2, null }, { 3, "\\N" } })))
      local rows = assert(conn:query("select id, name from cp order by id"))
      assert.same({ { id = 1, name = nasty }, { id = 2, name = null }, { id = 3, name = "\\N" } },
        { rows[1], rows[2], rows[3] })
    end)

    it("answers nil, err, sqlstate for bad data and stays usable", function()
      local n, err, state = conn:copy_in("copy cp (id) from stdin", { { "not a number" } })
      assert.is_nil(n)
      assert.equal("22P02", state, err)
      n, err, state = conn:copy_in("copy nowhere from stdin", { { 1 } })
      assert.is_nil(n)
      assert.equal("42P01", state, err)
      assert.equal(1, one("select 1 as one").one)
    end)

    it("runs statements before the COPY with it as one implicit transaction: all or none", function()
      assert(conn:exec("create temp table cp_log (n int)"))
      assert.equal(2, assert(conn:copy_in("insert into cp_log values (1); copy cp (id) from stdin", { { 1 }, { 2 } })))
      local n, _, state = conn:copy_in("insert into cp_log values (2); copy cp (id) from stdin",
        { { 3 }, { "not a number" } })
      assert.is_nil(n)
      assert.equal("22P02", state)
      assert.equal("idle", conn:status())
      assert.same({ n = 2, logged = 1 }, one("select count(*)::int as n, (select count(*)::int from cp_log) as logged"
        .. " from cp"))
    end)

    it("raises on a value it cannot encode, leaving the connection usable", function()
      assert.has_error(function() conn:copy_in("copy cp (id) from stdin", { { 1 }, { {} } }) end)
      assert.has_error(function() conn:copy_in("select 1", {}) end)
      assert.equal(0, one("select count(*)::int as n from cp").n)
    end)
  end)

  it("quote_ident and quote_literal round-trip through the server", function()
    local name, value = 'we"ird Name', [[it's a \back\slash]]
    assert(conn:exec("create temp table " .. pg.quote_ident(name) .. " (v text)"))
    assert(conn:exec("insert into " .. pg.quote_ident(name) .. " values (" .. pg.quote_literal(value) .. ")"))
    assert.equal(value, one("select v from " .. pg.quote_ident(name)).v)
  end)

  it("a closed handle answers nil, 'closed'", function()
    local c = assert(pg.connect())
    assert.is_true(c:close())
    assert.is_true(c:close())
    assert.matches("closed", tostring(c))
    for _, call in ipairs({
      function() return c:query("select 1") end,
      function() return c:exec("select 1") end,
      function() return c:copy_in("copy x from stdin", {}) end,
      function() return c:status() end,
      function() return c:set_timeout(1) end,
      function() return c:transaction(function() end) end,
    }) do
      local r, err = call()
      assert.is_nil(r)
      assert.equal("closed", err)
    end
    do
      local scoped <close> = assert(pg.connect())
      c = scoped
    end
    assert.equal("closed", select(2, c:query("select 1")))
  end)
end)

describe("mc.pg with a restarted server", function()
  local dir, cleanup, url, conn
  local services = host.root .. "/tools/services"

  local function svc(...)
    local r = proc.run({ services, ... }, { env = { MC_VAR = dir, DATABASE_URL = "", REDIS_URL = "" } })
    assert.equal(0, r.code, r.stderr)
    return r.stdout
  end

  setup(function()
    dir, cleanup = proc.tmpdir()
    url = svc("start", "postgres"):match("DATABASE_URL='([^']+)'")
    assert(url, "the private server's URL")
  end)

  teardown(function()
    local f = io.open(dir .. "/services/pg.dir")
    local pgdir = f and f:read("l")
    if f then f:close() end
    svc("stop", "postgres")
    if pgdir and pgdir:find("^/tmp/") then os.execute("rm -rf " .. proc.quote(pgdir)) end
    cleanup()
  end)

  before_each(function() conn = assert(pg.connect(url)) end)
  after_each(function() conn:close() end)

  local function backend(c)
    return assert(c:query("select pg_backend_pid() as pid"))[1].pid
  end

  it("reconnects once, transparently, outside a transaction", function()
    local before = backend(conn)
    svc("restart")
    local rows = assert(conn:query("select $1::int as v", 7))
    assert.equal(7, rows[1].v)
    assert.not_equal(before, backend(conn))
    assert.equal("UTC", assert(conn:query("show timezone"))[1].TimeZone)
  end)

  it("fails inside a transaction, then reconnects on the next use", function()
    assert(conn:exec("begin"))
    svc("restart")
    local rows, err = conn:query("select 1")
    assert.is_nil(rows)
    assert.equal("connection lost in transaction", err)
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
    assert.equal("idle", conn:status())
  end)

  it("transaction() answers nil, err when the connection is lost inside it", function()
    local r, err = conn:transaction(function(c)
      svc("restart")
      return c:query("select 1")
    end)
    assert.is_nil(r)
    assert.equal("connection lost in transaction", err)
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
  end)

  it("transaction() runs nothing more once the connection is lost inside it", function()
    assert(conn:exec("create table if not exists tx_lost (v int); truncate tx_lost"))
    local r, err = conn:transaction(function(c)
      svc("restart")
      c:query("insert into tx_lost values (1)") -- fails, and fn does not look
      c:query("insert into tx_lost values (2)") -- would run alone on a new session
      return true
    end)
    assert.is_nil(r)
    assert.equal("connection lost in transaction", err)
    assert.equal(0, assert(conn:query("select count(*) as n from tx_lost"))[1].n)
  end)

  it("answers nil, err when the server stays down", function()
    svc("stop", "postgres")
    local rows, err = conn:query("select 1")
    svc("start", "postgres")
    assert.is_nil(rows)
    assert.is_string(err)
  end)
end)

describe("mc.pg memory", function()
  proc.leak_it("has no definite leaks under valgrind", function()
    proc.assert_script_no_leaks([[
      local pg = require "mc.pg"
      local c = assert(pg.connect())
      assert(c:query("select $1::text as a, array[1,null]::int[] as b, '{}'::jsonb as j", "x"))
      assert(not c:query("select * from nowhere"))
      assert(c:exec("create temp table l (a int, b text)"))
      assert(c:copy_in("copy l from stdin", { { 1, "a" }, { 2, mc.null } }) == 2)
      assert(not pcall(c.copy_in, c, "copy l from stdin", { { {} } }))
      assert(not pcall(c.query, c, "select $1", print))
      assert(c:transaction(function(t) return t:query("select 1") end))
      c:close()
      assert(not pg.connect("postgres://u:p@127.0.0.1:1/x"))
      local d = assert(pg.connect())  -- left to __gc
      return 0
    ]])
  end)
end)
