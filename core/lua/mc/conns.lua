-- mc.conns: this Lua state's Postgres connection (DATABASE_URL) and Redis
-- connection (REDIS_TLS_URL or REDIS_URL), each made on first use and kept
-- (mc.pg and mc.redis reconnect by themselves after a drop; a reload builds new
-- states, hence new connections). The jobs framework, the application and
-- /health share these, instead of each caching its own.
--
-- A job running in a scheduler coroutine (mc.sched: many jobs in flight on one
-- thread) may yield in the middle of a query, so it can not share a connection
-- with the others: it gets one of its own from the state's pool, held until the
-- job ends (a session advisory lock or a transaction stays with the job that took
-- it), then given back for the next job (closed instead if a transaction is still
-- open). limit(kind, n) caps how many a state makes; a job that wants one while
-- all are out waits for one to come back.
local pg = require "mc.pg"
local redis = require "mc.redis"
local sched = require "mc.sched"

local running = coroutine.running

local _M = {}

local held = {}
local function new_pool() return { free = {}, out = 0, max = math.huge, wait = 30, waiting = 0 } end
local pools = { pg = new_pool(), redis = new_pool() }
local bound = setmetatable({}, { __mode = "k" }) -- coroutine -> { pg = conn, redis = conn }

local CONNECT = {
  pg = function() return pg.connect() end,
  redis = function() return redis.connect() end,
}

local function connect(kind)
  local url = kind:match("^pg@(.*)$")
  local c, err
  if url then c, err = pg.connect(url) else c, err = CONNECT[kind]() end
  if not c then return nil, kind == "redis" and ("redis: " .. err) or ("postgres: " .. err) end
  return c
end

-- The pool of kind: "pg", "redis", or "pg@<url>" (another Postgres: made on first
-- use, with pg's limit and wait, so a tenant's database is capped as ours is).
local function pool_of(kind)
  local pool = pools[kind]
  if not pool then
    pool = new_pool()
    pool.max, pool.wait = pools.pg.max, pools.pg.wait
    pools[kind] = pool
  end
  return pool
end

local function get(kind)
  if held[kind] then return held[kind] end
  local c, err = connect(kind)
  if not c then return nil, err end
  held[kind] = c
  return c
end

-- The running job coroutine's connection of that kind: its own, a pooled one, a
-- new one while under the limit, or (all out) one given back within POOL_WAIT.
local function job_conn(co, kind)
  local mine = bound[co]
  if mine and mine[kind] then return mine[kind] end
  local pool = pool_of(kind)
  -- A coroutine that holds a connection of another kind never waits: a handler
  -- holding Redis that waits for Postgres, and one holding Postgres that waits for
  -- Redis, would stall each other (and every kind's pool) until POOL_WAIT. So a
  -- kind may go past its cap by the coroutines holding another kind.
  if #pool.free == 0 and pool.out >= pool.max and not mine then
    pool.waiting = pool.waiting + 1
    local got = sched.wait_until(function() return #pool.free > 0 or pool.out < pool.max end, pool.wait)
    pool.waiting = pool.waiting - 1
    if not got then return nil, kind .. ": no pooled connection came free" end
  end
  local c = table.remove(pool.free)
  pool.out = pool.out + 1
  if not c then
    local err
    c, err = connect(kind)
    if not c then
      pool.out = pool.out - 1
      return nil, err
    end
  end
  mine = mine or {}
  mine[kind] = c
  bound[co] = mine
  return c
end

local function conn_for(kind)
  local co = running()
  if sched.adopted(co) then return job_conn(co, kind) end
  return get(kind)
end

-- pg() -> conn | nil, err
function _M.pg() return conn_for("pg") end

-- redis() -> conn | nil, err
function _M.redis() return conn_for("redis") end

-- pg_at(url) -> conn | nil, err: this state's connection to another Postgres
-- (a tenant's database), made on first use and kept, one per URL. The URL of
-- DATABASE_URL gets pg()'s own. A job in a scheduler coroutine gets one of its
-- own per URL from that URL's pool, as it does for pg() and under pg()'s limit:
-- others may yield in the middle of a query on a shared one.
local others = {}

function _M.pg_at(url)
  if type(url) ~= "string" then error("conns.pg_at: url must be a string", 2) end
  if url == os.getenv("DATABASE_URL") then return _M.pg() end
  local co = running()
  if sched.adopted(co) then return job_conn(co, "pg@" .. url) end
  if others[url] then return others[url] end
  local c, err = pg.connect(url)
  if not c then return nil, "postgres: " .. err end
  others[url] = c
  return c
end

-- use(kind, c): make c this state's connection of that kind (another database,
-- a test server); nil forgets it. Jobs in scheduler coroutines use the pool.
function _M.use(kind, c)
  if not CONNECT[kind] then error("conns.use: kind must be \"pg\" or \"redis\"", 2) end
  held[kind] = c
end

-- limit(kind, n[, wait]): at most n pooled connections of that kind (jobs in
-- flight that hold one; n = nil: no limit); a job waits up to `wait` seconds
-- (default 30) for one to come back.
function _M.limit(kind, n, wait)
  if not CONNECT[kind] then error("conns.limit: kind must be \"pg\" or \"redis\"", 2) end
  for k, pool in pairs(pools) do -- pg's limit is every other Postgres's too
    if k == kind or (kind == "pg" and k:find("^pg@")) then
      pool.max = n or math.huge
      pool.wait = wait or 30
    end
  end
end

-- waiting() -> how many coroutines wait for a pooled connection now (the worker
-- fetches no more jobs meanwhile, leaving them to threads with room)
function _M.waiting()
  local n = 0
  for _, pool in pairs(pools) do n = n + pool.waiting end
  return n
end

-- release(co): gives the connections job coroutine co held back to the pool
-- (the scheduler calls it when the job ends). A Postgres connection left inside
-- a transaction is closed rather than handed to the next job.
function _M.release(co)
  local mine = bound[co]
  if not mine then return end
  bound[co] = nil
  for kind, c in pairs(mine) do
    local pool = pools[kind]
    pool.out = pool.out - 1
    if kind ~= "redis" and c:status() ~= "idle" then
      c:close()
    else
      pool.free[#pool.free + 1] = c
    end
  end
end

return _M
