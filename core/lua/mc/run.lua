-- mc.run: `multiconnect run FILE|MODULE [args...]`.
-- The chunk gets the arguments as `...` and in the global `arg` (arg[0] is the
-- target, as lua.c does). What it returns decides the exit status: an integer is
-- the status; nil/false with a message prints the message and exits 1 (the
-- nil, err convention); anything else is 0. An error propagates to the C side,
-- which prints it with its traceback and exits 1.
local host = require "mc.host"
local file = require "mc.file"

local _M = {}

-- resolve(target) -> chunk | nil, err. A path to a file wins; otherwise a module
-- name is looked up under $MC_ROOT/scripts.
function _M.resolve(target)
  if file.exists(target) then
    return loadfile(target, "t")
  end
  if not target:match("^[%w_][%w_.%-]*$") then
    return nil, "no such file: " .. target
  end
  local dir = host.root .. "/scripts/"
  local path, err = package.searchpath(target, dir .. "?.lua;" .. dir .. "?/init.lua")
  if not path then
    return nil, string.format("no file or module named %q;%s", target, err)
  end
  return loadfile(path, "t")
end

-- job_args(text) -> array | nil, err: the JSON array `run jobs:NAME` takes.
function _M.job_args(text)
  if text == nil then return {} end
  local doc, err = require("mc.json").decode(text)
  if doc == nil then return nil, "args are not JSON: " .. err end
  if type(doc) ~= "table" then return nil, "args must be a JSON array" end
  local n = 0
  for k in pairs(doc) do
    if math.type(k) ~= "integer" then return nil, "args must be a JSON array" end
    n = n + 1
  end
  if n ~= #doc then return nil, "args must be a JSON array" end
  return doc
end

-- `run jobs:NAME [json-args]`: one job, inline, as Heroku Scheduler runs it.
function _M.run_job(name, args_json, extra)
  local jobs = require "mc.jobs"
  local function fail(msg)
    io.stderr:write("multiconnect run jobs:", name, ": ", msg, "\n")
    return 1
  end
  if extra then return fail("takes one argument, a JSON array of args") end
  local args, aerr = _M.job_args(args_json)
  if not args then return fail(aerr) end
  local found, ferr = jobs.exists(name)
  if not found then return fail(ferr) end
  local job = { class = name, args = args, jid = "inline", queue = "inline" }
  local ctx = { jid = job.jid, queue = job.queue, inline = true,
                log = require("mc.log").with({ class = name, jid = job.jid }) }
  local ok, err, trace = jobs.perform(job, ctx, require("mc.env").number("JOB_TIMEOUT", 600, { min = 0.001 }))
  if not ok then return fail(trace or err) end
  return 0
end

function _M.main(args)
  local target = args[1]
  if not target then
    io.stderr:write("usage: multiconnect run FILE|MODULE [args...] | jobs:NAME [json-args]\n")
    return 2
  end
  local job = target:match("^jobs:(.*)$")
  if job and not file.exists(target) then return _M.run_job(job, args[2], args[3]) end
  local chunk, err = _M.resolve(target)
  if not chunk then
    io.stderr:write("multiconnect run: ", err, "\n")
    return 1
  end
  local script_args = { [0] = target, table.unpack(args, 2) }
  _G.arg = script_args
  local result = table.pack(chunk(table.unpack(script_args, 1, #args - 1)))
  local status = result[1]
  if math.type(status) == "integer" then return status end
  if result.n > 0 and not status then
    io.stderr:write("multiconnect run: ", tostring(result[2] or "failed"), "\n")
    return 1
  end
  return 0
end

return _M
