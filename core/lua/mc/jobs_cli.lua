-- mc.jobs_cli: `multiconnect jobs stats|retry-dead|clear`, the operator's view of
-- the queues mc.jobs and mc.worker keep in Redis.
local jobs = require "mc.jobs"
local json = require "mc.json"

local _M = {}

local USAGE = [[
usage: multiconnect jobs <command>

  stats [--json]       processed, failed, scheduled, retries, dead, processes and
                       the size of each queue
  retry-dead           move every job of the dead set back to its queue (as it is:
                       retry_count and the error fields stay; a job that fails
                       again goes back to the dead set)
  clear QUEUE|--all    delete every job waiting in QUEUE, or in every queue
                       (scheduled, retry and dead jobs are left alone)
]]

local function usage()
  io.stderr:write(USAGE)
  return 2
end

local function fail(err)
  io.stderr:write("multiconnect jobs: ", tostring(err), "\n")
  return 1
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function stats(args)
  local as_json = args[1] == "--json"
  if #args > 1 or (args[1] and not as_json) then return usage() end
  local s, err = jobs.stats()
  if not s then return fail(err) end
  if as_json then
    print(json.encode(s))
    return 0
  end
  local lines = {}
  for _, k in ipairs({ "processed", "failed", "scheduled", "retries", "dead", "processes" }) do
    lines[#lines + 1] = string.format("%-10s %d", k, s[k])
  end
  local names = sorted_keys(s.queues)
  lines[#lines + 1] = #names == 0 and "queues     none" or "queues"
  for _, q in ipairs(names) do lines[#lines + 1] = string.format("  %-20s %d", q, s.queues[q]) end
  print(table.concat(lines, "\n"))
  return 0
end

local function retry_dead(args)
  if #args > 0 then return usage() end
  local moved, kept = jobs.retry_dead()
  if not moved then return fail(kept) end
  print(string.format("moved %d dead jobs back to their queues", moved))
  if kept > 0 then print(string.format("left %d dead entries that are not jobs", kept)) end
  return 0
end

-- Empties one queue: LLEN and DEL in one MULTI, and forgets the name (as Sidekiq's
-- Queue#clear does; a new job brings it back).
local function clear_queue(r, name)
  local res, err = r:pipeline(function(p)
    p:call("MULTI")
    p:call("LLEN", "queue:" .. name)
    p:call("DEL", "queue:" .. name)
    p:call("SREM", "queues", name)
    p:call("EXEC")
  end)
  if not res then return nil, err end
  local exec = res[5]
  if type(exec) ~= "table" or exec.err then return nil, exec and exec.err or "transaction failed" end
  return exec[1]
end

local function clear(args)
  local target = args[1]
  if #args ~= 1 or target == "" then
    io.stderr:write("multiconnect jobs clear: give a queue name, or --all for every queue\n")
    return 2
  end
  local r, err = jobs.redis()
  if not r then return fail(err) end
  local names
  if target == "--all" then
    names, err = r:call("SMEMBERS", "queues")
    if not names then return fail(err) end
    table.sort(names)
  else
    local known = r:call("SISMEMBER", "queues", target)
    local exists = r:call("EXISTS", "queue:" .. target)
    if known == nil or exists == nil then return fail("redis: cannot read queues") end
    if known == 0 and exists == 0 then return fail("no queue named " .. target) end
    names = { target }
  end
  for _, name in ipairs(names) do
    local n, cerr = clear_queue(r, name)
    if not n then return fail(cerr) end
    print(string.format("cleared queue %s: %d jobs deleted", name, n))
  end
  if #names == 0 then print("no queues") end
  return 0
end

local COMMANDS = { stats = stats, ["retry-dead"] = retry_dead, clear = clear }

function _M.main(args)
  local name = table.remove(args, 1)
  local command = COMMANDS[name]
  if not command then
    if name and name ~= "help" and name ~= "-h" and name ~= "--help" then
      io.stderr:write(string.format("multiconnect jobs: unknown command %q\n", name))
    end
    return usage()
  end
  return command(args)
end

return _M
