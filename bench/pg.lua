-- bench/pg.lua -- mc.pg against its peers on the same server, in the same run:
--   single-row SELECT round trips/s: conn:query vs `pgbench -S` (one client)
--   COPY rows/s: conn:copy_in vs `psql -c "\copy ... from file"`
-- Run by bench/primitives (which exports DATABASE_URL), or:
--   DATABASE_URL=... bin/multiconnect run bench/pg.lua [seconds] [copy_rows]
local pg = require "mc.pg"
local host = require "mc.host"

local SECONDS = tonumber(arg[1]) or 5
local COPY_ROWS = tonumber(arg[2]) or 200000
local BENCH_DB = "multiconnect_bench"
local now = host.now

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1"))
  local out = f:read("a")
  local ok = f:close()
  if not ok then error("failed: " .. cmd .. "\n" .. out) end
  return out
end

-- A database of its own, so pgbench's tables stay out of the dev database.
local function bench_url(admin)
  local exists = assert(admin:query("select 1 from pg_database where datname = $1", BENCH_DB))
  if #exists == 0 then assert(admin:exec("create database " .. pg.quote_ident(BENCH_DB))) end
  local base = assert(os.getenv("DATABASE_URL"))
  local prefix, query = base:match("^(.-://[^/]*)/?[^?]*(.*)$")
  return prefix .. "/" .. BENCH_DB .. query
end

local function report(what, ours, peer, unit)
  print(string.format("%-28s mc.pg %10.0f %s   peer %10.0f %s   ratio %.2f",
    what, ours, unit, peer, unit, ours / peer))
end

local function bench_select(url)
  sh("pgbench -q -i -s 1 " .. quote(url))
  local out = sh("pgbench -n -S -c 1 -j 1 -T " .. SECONDS .. " " .. quote(url))
  local peer = assert(tonumber(out:match("tps = ([%d%.]+) %(without initial connection time%)")), out)
  local conn = assert(pg.connect(url))
  local n, t0 = 0, now()
  local deadline = t0 + SECONDS
  repeat
    for _ = 1, 100 do
      local aid = math.random(1, 100000)
      local rows = assert(conn:query("SELECT abalance FROM pgbench_accounts WHERE aid = $1", aid))
      assert(rows[1].abalance == 0)
    end
    n = n + 100
  until now() >= deadline
  local ours = n / (now() - t0)
  conn:close()
  report("select round trips (1 conn)", ours, peer, "tps")
end

local function bench_copy(url)
  local conn = assert(pg.connect(url))
  assert(conn:exec("drop table if exists bench_copy;"
    .. " create unlogged table bench_copy (id int8, name text, score float8, ok bool)"))
  local rows = {}
  local file = os.tmpname()
  do -- the file's lines go out of scope before the timed runs
    local lines = {}
    for i = 1, COPY_ROWS do
      local r = { i, "customer " .. i .. " with a\ttab", i / 7, i % 3 == 0 }
      rows[i] = r
      lines[i] = string.format("%d\t%s\t%.17g\t%s", i, "customer " .. i .. " with a\\ttab", r[3],
        r[4] and "t" or "f")
    end
    local f = assert(io.open(file, "wb"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
  end

  -- best of three each, alternating: the server's own pace varies run to run
  local ours, peer = 0, 0
  for _ = 1, 3 do
    assert(conn:exec("truncate bench_copy"))
    local t0 = now()
    sh("psql -q " .. quote(url) .. " -c " .. quote("\\copy bench_copy from '" .. file .. "'"))
    peer = math.max(peer, COPY_ROWS / (now() - t0))
    assert(conn:exec("truncate bench_copy"))
    collectgarbage() -- the garbage of building the rows is not the copy's cost
    t0 = now()
    assert(assert(conn:copy_in("copy bench_copy from stdin", rows)) == COPY_ROWS)
    ours = math.max(ours, COPY_ROWS / (now() - t0))
  end
  os.remove(file)
  assert(conn:exec("drop table bench_copy"))
  conn:close()
  report("copy rows (" .. COPY_ROWS .. ")", ours, peer, "rows/s")
end

local admin = assert(pg.connect())
local url = bench_url(admin)
bench_select(url)
bench_copy(url)
assert(admin:exec("drop database " .. pg.quote_ident(BENCH_DB)))
admin:close()
