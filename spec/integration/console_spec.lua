-- `multiconnect console`: the real binary against a private database (mc_console,
-- migrated by `multiconnect migrate`) and Redis db 16; piped, -e, and through a
-- pseudo-terminal (tmux) as an operator types. Locals live as long as their
-- chunk, as in lua.c: a line-by-line script shares globals.
local pg = require "mc.pg"
local json = require "mc.json"
local proc = require "support.process"
local redis_db = require "support.redis_db"
local pg_db = require "support.pg_db"
local tmux = require "support.tmux"

local DB = "mc_console"
local FAILED = "00D000000000001EAA"  -- 15-character form: 00D000000000001
local ACTIVE = "00D000000000002EAA"
local SECRET = "v1.k1.SEALED-TOKEN-NEVER-SHOWN"

describe("console", function()
  local url, conn, rdb, dir, cleanup, env

  local function console(args, stdin)
    local argv = { "console" }
    for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
    return proc.mc(argv, { env = env, stdin = stdin })
  end

  setup(function()
    url = pg_db.create(DB)
    local r = proc.mc({ "migrate" }, { env = { DATABASE_URL = url } })
    assert(r.code == 0, r.stderr)
    conn = assert(pg.connect(url))
    rdb = redis_db.open(16)
    dir, cleanup = proc.tmpdir()
    env = rdb:env({ DATABASE_URL = url, HOME = dir, MC_HISTORY_FILE = false, LOG_LEVEL = "error" })
  end)

  teardown(function()
    conn:close()
    rdb:close()
    pg_db.drop(DB)
    cleanup()
  end)

  before_each(function()
    assert(conn:exec("DELETE FROM organizations"))
    assert(conn:query([[INSERT INTO organizations (org_id, org_name, admin_email, state, failed_step,
      last_error, access_token) VALUES ($1, 'Acme', 'a@acme.test', 'failed', 'connection_configured',
      'connect: 500', $3), ($2, 'Beta', 'b@beta.test', 'active', NULL, NULL, $3)]], FAILED, ACTIVE, SECRET))
    assert(rdb.r:call("FLUSHDB"))
  end)

  describe("piped", function()
    it("runs stdin chunk by chunk, prints expressions, no prompts or colour", function()
      local r = console({}, 'print(#orgs())\nn = 0\nfor _, o in ipairs(orgs()) do\n  n = n + 1\nend\nn\n'
        .. '{ list = { 1, mc.null }, s = "x" }\n=1 + 1, "two"\n')
      assert.equal(0, r.code, r.stderr)
      assert.equal('2\n2\n{\n  list = {\n    1,\n    null\n  },\n  s = "x"\n}\n2\ttwo\n', r.stdout)
      assert.is_nil(r.stdout:find("mc>", 1, true))
      assert.is_nil(r.stdout:find("\27", 1, true))
    end)

    it("stops at the first chunk that raises, with status 1 and the message", function()
      local r = console({}, 'print("before")\nerror("broken on purpose")\nprint("after")\n')
      assert.equal(1, r.code)
      assert.equal("before\n", r.stdout)
      assert.matches("broken on purpose", r.stderr, 1, true)
    end)

    it("reports a syntax error, including input that ends inside a chunk", function()
      local r = console({}, "for i = 1, 2 do\n")
      assert.equal(1, r.code)
      assert.matches("<eof>", r.stderr, 1, true)
    end)
  end)

  describe("-e", function()
    it("runs one chunk (locals span its lines) and prints its values", function()
      local r = console({ "-e", "local a = 6\nreturn a * 7, orgs()[1].state" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("42\tfailed\n", r.stdout)
    end)

    it("exits 1 with the message when the chunk fails or returns nil, err", function()
      local r = console({ "-e", "org('00D000000000009')" })
      assert.equal(1, r.code)
      assert.matches("no such org 00D000000000009", r.stderr, 1, true)
      r = console({ "-e", "org('" .. ACTIVE .. "'):resume()" })
      assert.equal(1, r.code)
      assert.matches("org is active, not failed: nothing to resume", r.stderr, 1, true)
      r = console({ "-e", "org('not-an-id')" })
      assert.equal(1, r.code)
      assert.matches("15- or 18-character", r.stderr, 1, true)
    end)

    it("usage errors exit 2", function()
      assert.equal(2, console({ "-x" }).code)
      assert.equal(2, console({ "-e" }).code)
    end)
  end)

  describe("helpers", function()
    it("org(id) takes the 15-character id and shows public fields, never tokens", function()
      local r = console({ "-e", "org('00D000000000001')" })
      assert.equal(0, r.code, r.stderr)
      assert.matches('org_id = "' .. FAILED .. '"', r.stdout, 1, true)
      assert.matches('last_error = "connect: 500"', r.stdout, 1, true)
      assert.matches("activated_at = null", r.stdout, 1, true)
      assert.is_nil(r.stdout:find("SEALED", 1, true))
      assert.is_nil(r.stdout:find("access_token", 1, true))
    end)

    it("org(id):resume() moves a failed org back to its step, records by=console, enqueues it", function()
      local r = console({ "-e", "local o = org('" .. FAILED .. "'):resume() "
        .. "return o.state, #org('" .. FAILED .. "'):events()" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("connection_configured\t1\n", r.stdout)
      local row = assert(conn:query("SELECT state, failed_step, last_error FROM organizations WHERE org_id = $1",
        FAILED))[1]
      assert.same({ state = "connection_configured", failed_step = mc.null, last_error = mc.null }, row)
      local ev = assert(conn:query("SELECT from_state, to_state, kind, details FROM onboarding_events"
        .. " WHERE org_id = $1", FAILED))
      assert.same({ { from_state = "failed", to_state = "connection_configured", kind = "request",
        details = { by = "console" } } }, { ev[1] })
      local queued = assert(rdb.r:call("LRANGE", "queue:default", 0, -1))
      assert.equal(1, #queued)
      local job = json.decode(queued[1])
      assert.equal("onboarding.advance", job.class)
      assert.same({ FAILED }, job.args)
    end)

    it("jobs.stats(), jobs.dead() and jobs.retry_dead() read and move the Redis sets", function()
      assert(rdb.r:call("SET", "stat:processed", "7"))
      assert(rdb.r:call("ZADD", "dead", 1, json.encode({ class = "x.y", args = {}, jid = "j1", queue = "low" })))
      local r = console({ "-e", "local s = jobs.stats() local d = jobs.dead() "
        .. "return s.processed, s.dead, #d, d[1].class, jobs.retry_dead()" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("7\t1\t1\tx.y\t1\t0\n", r.stdout)
      assert.equal(0, rdb.r:call("ZCARD", "dead"))
      assert.equal(1, rdb.r:call("LLEN", "queue:low"))
    end)

    it("sql() takes parameters and returns rows, affected; an SQL error is nil, err", function()
      local r = console({ "-e", "sql('SELECT org_name FROM organizations WHERE org_id = $1', '" .. ACTIVE .. "')" })
      assert.equal(0, r.code, r.stderr)
      assert.equal('{\n  {\n    org_name = "Beta"\n  }\n}\t1\n', r.stdout)
      r = console({ "-e", "sql('SELECT nope FROM organizations')" })
      assert.equal(1, r.code)
      assert.matches('column "nope" does not exist', r.stderr, 1, true)
    end)

    it("orgs(state) filters; reload() drops the scripts' modules and keeps the helpers working", function()
      local r = console({ "-e", "local before = orgs return #orgs('active'), reload() > 0, orgs ~= before, #orgs()" })
      assert.equal(0, r.code, r.stderr)
      assert.equal("1\ttrue\ttrue\t2\n", r.stdout)
    end)
  end)

  local tty_it = tmux.available and it or pending
  tty_it("at a terminal: multi-line input, pretty tables, errors, Ctrl-C, history across sessions", function()
    local history = dir .. "/history"
    os.remove(history)
    local tenv = { DATABASE_URL = env.DATABASE_URL, REDIS_URL = env.REDIS_URL, HOME = dir,
                   MC_HISTORY_FILE = history }
    local t = tmux.start({ proc.exe, "console" }, tenv)
    local ok, err = pcall(function()
      assert.truthy(t:wait_for("mc>"), t:screen())
      t:type("function twice(a)"); t:keys("Enter")
      assert.truthy(t:wait_for(">>"), t:screen())
      t:type("return a * 2"); t:keys("Enter")
      t:type("end"); t:keys("Enter")
      t:type("twice(21)"); t:keys("Enter")
      assert.truthy(t:wait_for("\n42\nmc>"), t:screen())
      t:type("error('oops')"); t:keys("Enter")
      assert.truthy(t:wait_for("console:1: oops"), t:screen())
      t:type("twice(50)"); t:keys("Enter")
      assert.truthy(t:wait_for("\n100\nmc>"), t:screen())
      t:type("half typed line")
      assert.truthy(t:wait_for("mc> half typed line"), t:screen()) -- on screen before Ctrl-C, not racing it
      t:keys("C-c")
      t:type("{ org = org('00D000000000001').org_name, n = { 1 } }"); t:keys("Enter")
      assert.truthy(t:wait_for('{\n  n = {\n    1\n  },\n  org = "Acme"\n}'), t:screen())
      -- the cancelled text went nowhere: the next line ran alone
      assert.truthy(t:screen():find("mc> half typed line\nmc> { org", 1, true), t:screen())
      t:keys("C-d")
      assert.truthy(proc.wait_for(function() return t:dead() end, 20), t:screen())
    end)
    t:stop()
    assert(ok, err)
    local f = assert(io.open(history))
    local lines = f:read("a")
    f:close()
    assert.equal("function twice(a)\nreturn a * 2\nend\ntwice(21)\nerror('oops')\ntwice(50)\n"
      .. "{ org = org('00D000000000001').org_name, n = { 1 } }\n", lines)

    -- a second session recalls the last lines with Up-arrow
    t = tmux.start({ proc.exe, "console" }, tenv)
    ok, err = pcall(function()
      assert.truthy(t:wait_for("mc>"), t:screen())
      t:keys("Up", "Up")
      assert.truthy(t:wait_for("mc> twice(50)"), t:screen())
      t:keys("Enter")
      assert.truthy(t:wait_for("twice(50)\nconsole:1: attempt to call a nil value (global 'twice')"), t:screen())
    end)
    t:stop()
    assert(ok, err)
  end)

  proc.leak_it("mc.readline has no definite leaks under valgrind (stdin not a terminal)", function()
    local history = dir .. "/leak_history"
    os.remove(history)
    proc.assert_script_no_leaks(string.format([[
      local rl = mc.readline
      assert(rl.readline("> ") == "first line")
      assert(rl.readline("> ") == nil)
      assert(rl.isatty(0) == false)
      rl.stifle_history(10)
      for i = 1, 20 do rl.add_history("entry " .. i) end
      local path = %q
      assert(not rl.read_history(path))
      assert(rl.write_history(path))
      assert(rl.append_history(2, path))
      assert(rl.history_truncate_file(path, 5))
      assert(rl.read_history(path))
      assert(not pcall(rl.isatty, -1))
      return 0
    ]], history), nil, { stdin = "first line\n" })
    proc.assert_no_leaks({ "console", "-e", "local s = jobs.stats() return #orgs(), s.dead" }, { env = env })
    local f = assert(io.open(history))
    local n = select(2, f:read("a"):gsub("\n", ""))
    f:close()
    assert.equal(5, n)
  end)
end)
