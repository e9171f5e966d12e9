-- `multiconnect run jobs:NAME` and `multiconnect jobs ...`: the real binary, with
-- a scratch MC_ROOT and a Redis database of this spec's own.
local json = require "mc.json"
local proc = require "support.process"
local redis_db = require "support.redis_db"

local DB = 14

local JOBS = {
  ["scripts/jobs/mark.lua"] = [[
return { perform = function(args, ctx)
  local f = assert(io.open(os.getenv("MARKER"), "w"))
  f:write(mc.json.encode({ args = args, inline = ctx.inline }))
  f:close()
end }
]],
  ["scripts/jobs/reports/boom.lua"] = [[
return { perform = function(args) error("report failed for " .. tostring(args[1])) end }
]],
  ["scripts/jobs/soft.lua"] = [[
return { perform = function() return nil, "upstream said no" end }
]],
}

local function project() return proc.project(JOBS) end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function job(class, queue, extra)
  local j = { class = class, args = { 1 }, jid = class .. queue, queue = queue, retry = true }
  for k, v in pairs(extra or {}) do j[k] = v end
  return json.encode(j)
end

describe("multiconnect run jobs:NAME", function()
  local root, cleanup, db
  before_each(function()
    root, cleanup = project()
    db = redis_db.open(DB)
  end)
  after_each(function()
    cleanup()
    db:close()
  end)

  local function run(args)
    return proc.mc(args, { env = db:env({ MC_ROOT = root, MARKER = root .. "/marker" }), cwd = root })
  end

  it("runs perform with the JSON args, inline, and exits 0", function()
    local r = run({ "run", "jobs:mark", '[1,"x",{"k":true}]' })
    assert.equal(0, r.code, r.stderr)
    local done = json.decode(assert(slurp(root .. "/marker"), "the job did not run"))
    assert.same({ 1, "x", { k = true } }, done.args)
    assert.is_true(done.inline)
    -- nothing went through Redis
    assert.equal(0, db.r:call("DBSIZE"))
  end)

  it("defaults the args to []", function()
    local r = run({ "run", "jobs:mark" })
    assert.equal(0, r.code, r.stderr)
    assert.same({}, json.decode(slurp(root .. "/marker")).args)
  end)

  it("exits 1 with the job's error when perform raises or returns nil, err", function()
    local r = run({ "run", "jobs:reports.boom", '["acme"]' })
    assert.equal(1, r.code)
    assert.matches("jobs:reports.boom: .*report failed for acme", r.stderr)
    local soft = run({ "run", "jobs:soft" })
    assert.equal(1, soft.code)
    assert.matches("jobs:soft: upstream said no", soft.stderr)
  end)

  it("refuses malformed or non-array args before running anything", function()
    for _, bad in ipairs({ "[1,", "nope", '{"a":1}', "42", '"x"' }) do
      local r = run({ "run", "jobs:mark", bad })
      assert.equal(1, r.code, bad)
      assert.matches("jobs:mark: args ", r.stderr)
      assert.is_nil(slurp(root .. "/marker"), "ran with " .. bad)
    end
    local two = run({ "run", "jobs:mark", "[]", "[]" })
    assert.equal(1, two.code)
    assert.matches("one argument", two.stderr)
  end)

  it("exits 1 for an unknown job", function()
    local r = run({ "run", "jobs:nope.missing" })
    assert.equal(1, r.code)
    assert.matches("jobs:nope.missing: no job nope.missing %(scripts/jobs/nope/missing.lua%)", r.stderr)
    local bad = run({ "run", "jobs:../etc" })
    assert.equal(1, bad.code)
    assert.matches("bad job name", bad.stderr)
  end)
end)

describe("multiconnect jobs", function()
  local db
  before_each(function() db = redis_db.open(DB) end)
  after_each(function() db:close() end)

  local function jobs_cmd(...)
    return proc.mc({ "jobs", ... }, { env = db:env() })
  end

  local function seed()
    local r = db.r
    assert(r:call("SET", "stat:processed", 7))
    assert(r:call("SET", "stat:failed", 2))
    assert(r:call("SADD", "queues", "default", "critical"))
    assert(r:call("LPUSH", "queue:default", job("a", "default"), job("b", "default"), job("c", "default")))
    assert(r:call("LPUSH", "queue:critical", job("d", "critical")))
    assert(r:call("ZADD", "schedule", 1e10, job("e", "default")))
    assert(r:call("ZADD", "retry", 1e10, job("f", "default")))
    assert(r:call("ZADD", "dead", 1, job("g", "critical", { retry_count = 25, error_message = "x" }),
      2, job("h", "low", { retry_count = 25 }), 3, "not json"))
    assert(r:call("SADD", "processes", "host:1:abc"))
  end

  it("stats prints the counters, set sizes, processes and queues", function()
    seed()
    local r = jobs_cmd("stats")
    assert.equal(0, r.code, r.stderr)
    for _, line in ipairs({ "processed  7", "failed     2", "scheduled  1", "retries    1", "dead       3",
      "processes  1", "  critical             1", "  default              3" }) do
      assert.truthy(r.stdout:find(line .. "\n", 1, true), "missing " .. line .. " in:\n" .. r.stdout)
    end
  end)

  it("stats --json", function()
    seed()
    local r = jobs_cmd("stats", "--json")
    assert.equal(0, r.code, r.stderr)
    assert.same({ processed = 7, failed = 2, scheduled = 1, retries = 1, dead = 3, processes = 1,
      queues = { default = 3, critical = 1 } }, json.decode(r.stdout))
  end)

  it("stats on an empty database", function()
    local r = jobs_cmd("stats")
    assert.equal(0, r.code, r.stderr)
    assert.matches("processed  0", r.stdout)
    assert.matches("queues     none", r.stdout)
  end)

  it("retry-dead moves every dead job to its queue, unchanged, and leaves what is not a job", function()
    seed()
    local r = jobs_cmd("retry-dead")
    assert.equal(0, r.code, r.stderr)
    assert.matches("moved 2 dead jobs", r.stdout)
    assert.matches("left 1 dead entries that are not jobs", r.stdout)
    assert.same({ "not json" }, db.r:call("ZRANGE", "dead", 0, -1))
    local critical = db.r:call("LRANGE", "queue:critical", 0, -1)
    assert.equal(2, #critical)
    local moved = json.decode(critical[1]) -- LPUSH: the left end
    assert.equal("gcritical", moved.jid)
    assert.equal(25, moved.retry_count)
    assert.equal(1, db.r:call("LLEN", "queue:low"))
    assert.equal(1, db.r:call("SISMEMBER", "queues", "low"))
  end)

  it("clear needs a queue name or --all", function()
    seed()
    local r = jobs_cmd("clear")
    assert.equal(2, r.code)
    assert.matches("give a queue name, or %-%-all", r.stderr)
    assert.equal(3, db.r:call("LLEN", "queue:default"))
  end)

  it("clear QUEUE empties that queue only", function()
    seed()
    local r = jobs_cmd("clear", "default")
    assert.equal(0, r.code, r.stderr)
    assert.matches("cleared queue default: 3 jobs deleted", r.stdout)
    assert.equal(0, db.r:call("EXISTS", "queue:default"))
    assert.equal(1, db.r:call("LLEN", "queue:critical"))
    assert.equal(1, db.r:call("ZCARD", "schedule"))
  end)

  it("clear refuses a queue it does not know", function()
    seed()
    local r = jobs_cmd("clear", "defualt")
    assert.equal(1, r.code)
    assert.matches("no queue named defualt", r.stderr)
  end)

  it("clear --all empties every queue, not the sets", function()
    seed()
    local r = jobs_cmd("clear", "--all")
    assert.equal(0, r.code, r.stderr)
    assert.matches("cleared queue critical: 1 jobs deleted", r.stdout)
    assert.matches("cleared queue default: 3 jobs deleted", r.stdout)
    assert.equal(0, db.r:call("EXISTS", "queue:default", "queue:critical"))
    assert.equal(3, db.r:call("ZCARD", "dead"))
  end)

  it("an unknown subcommand prints the usage, exit 2", function()
    local r = jobs_cmd("frobnicate")
    assert.equal(2, r.code)
    assert.matches("unknown command", r.stderr)
    assert.matches("retry%-dead", r.stderr)
  end)
end)
