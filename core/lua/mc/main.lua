-- mc.main: the command line. main(...) gets argv (without the program name) and
-- returns the exit status; C runs it under lua_pcall with a traceback, so an
-- error anywhere ends as a traceback on stderr and status 1.
local host = require "mc.host"

local _M = {}

local USAGE = [[
usage: multiconnect <command> [args...]

commands:
  run FILE|MODULE [args...]  run a Lua file, or a module under scripts/, with
                             every mc.* module loaded; exit 1 on error
  run jobs:NAME [json-args]  run one job (scripts/jobs/NAME.lua) inline with the
                             JSON array of args (default []); exit 1 if it fails
  web                        serve HTTP on $PORT: the routes of scripts/app.lua
  worker                     run background jobs from Redis (scripts/jobs/)
  sandbox                    serve the stand-ins for Heroku and the other external
                             services (sandbox/) on $SANDBOX_PORT (default 5100)
  clock [--check]            enqueue the jobs of scripts/schedule.lua when due
                             (cron or every N seconds; once across clocks);
                             --check only validates the schedule
  migrate [status]           apply the pending sql/NNN_name.sql migrations in
                             order, each once (the release phase); status lists
                             them as applied or pending
  console [-e CHUNK]         the operator's Lua REPL: orgs(), org(id), jobs, sql(),
                             reload() and every mc.* module; reads stdin without
                             prompts when it is not a terminal; -e runs one chunk
  jobs stats [--json]        counters, set and queue sizes, processes
  jobs retry-dead            move every dead job back to its queue
  jobs clear QUEUE|--all     empty one queue, or every queue
  check                      validate scripts/, the schedule, the tenant hooks and
                             the mappings without starting anything; exit 1 and
                             one line per problem (file:line: what (fix: how))
  new tenant ORG_ID          write scripts/tenants/ORG_ID.lua and its spec from
                             a commented template (tools/templates/)
  new job NAME               write scripts/jobs/NAME.lua and its spec
  release                    the release phase: check, then migrate; exit 1 at
                             the first that fails, so a release with a broken
                             script or a failed migration never goes live
  keys new [KID]             print a new ENCRYPTION_KEYS entry, KID:base64key
                             (KID default: k and today's UTC date, k20260131)
  keys status [--json]       the stored tokens per key id, and how many the
                             keys of ENCRYPTION_KEYS cannot open (exit 1 if any)
  keys rotate [--batch N]    re-seal every stored token under the first key of
                             ENCRYPTION_KEYS, N per transaction (default 100),
                             with progress; run again to resume
  test [busted args] [paths] run the specs (default: spec/) inside the host
  version                    print the versions of multiconnect and its libraries
  help                       print this text

environment:
  MC_ROOT     project root holding scripts/ (default: the folder above bin/)
  LOG_LEVEL   debug, info, warn or error (default: info)
  DATABASE_URL, MIGRATIONS_DIR (default: $MC_ROOT/sql) for migrate
  MC_HISTORY_FILE  the console's history (default: ~/.multiconnect_history)
]]

local COMMANDS = {}

function COMMANDS.help()
  io.stdout:write(USAGE)
  return 0
end

local LIBRARY_ORDER = { "lua", "libmicrohttpd", "libpq", "hiredis", "libcurl", "openssl", "readline" }

function COMMANDS.version()
  local v = host.versions()
  local lines = { "multiconnect " .. v.multiconnect }
  for _, name in ipairs(LIBRARY_ORDER) do
    lines[#lines + 1] = string.format("%-14s %s", name, v[name])
  end
  lines[#lines + 1] = string.format("%-14s %s", "lua-cjson", require("cjson")._VERSION)
  io.stdout:write(table.concat(lines, "\n"), "\n")
  return 0
end

function COMMANDS.run(args)
  return require("mc.run").main(args)
end

-- configured(process) -> true | false after saying why on stderr. When the
-- application has a `config` module with check(process) (its table of every
-- variable it reads), a serving process starts only if that check passes, so a
-- missing or malformed variable is named at start, all of them in one message,
-- not on the first request that needs one.
local function configured(process)
  if not package.searchpath("config", package.path) then return true end
  local ok, config = pcall(require, "config")
  if not ok then
    io.stderr:write("multiconnect ", process, ": the config module does not load: ", tostring(config), "\n")
    return false
  end
  if type(config) ~= "table" or type(config.check) ~= "function" then return true end
  local good, problems = config.check(process)
  if good then return true end
  io.stderr:write("multiconnect ", process, ": not starting, the configuration is incomplete:\n  ",
    table.concat(problems, "\n  "), "\n")
  return false
end

-- The application's layout under MC_ROOT is named here, once: which file each
-- server loads and which folders' edits reload it.
function COMMANDS.web()
  if not configured("web") then return 1 end
  return require("mc.web").serve({ app = "scripts/app.lua", watch = { "scripts", "mappings" } })
end

-- The stand-ins' handlers do not yield: they share one Redis connection per state
-- (sandbox/store.lua) and stall with host.sleep, each request on its own thread.
function COMMANDS.sandbox()
  return require("mc.web").serve({ app = "sandbox/app.lua", watch = { "sandbox", "force-app" },
                                   port_var = "SANDBOX_PORT", port = 5100, yield = false })
end

function COMMANDS.worker()
  if not configured("worker") then return 1 end
  return require("mc.worker").serve({ watch = { "scripts" } })
end

function COMMANDS.clock(args)
  if args[1] ~= "--check" and not configured("clock") then return 1 end
  return require("mc.clock").serve(args)
end

function COMMANDS.jobs(args)
  return require("mc.jobs_cli").main(args)
end

function COMMANDS.console(args)
  return require("mc.console").main(args)
end

function COMMANDS.migrate(args)
  return require("mc.migrate").main(args)
end

function COMMANDS.check(args)
  return require("mc.check").main(args)
end

-- release: what Heroku runs before a release goes live (Procfile, heroku.yml).
-- Checking first means a script that does not load fails the release, not the
-- dynos it would have replaced.
function COMMANDS.release(args)
  if args[1] ~= nil then
    io.stderr:write("usage: multiconnect release\n")
    return 2
  end
  local status = require("mc.check").main({})
  if status ~= 0 then return status end
  return require("mc.migrate").main({})
end

function COMMANDS.new(args)
  return require("mc.new").main(args)
end

-- keys new [KID]: ENCRYPTION_KEYS is "kid:base64key,...", which Heroku's
-- app.json generator cannot make (it makes hex secrets), so the operator makes
-- one here: `heroku config:set ENCRYPTION_KEYS=$(multiconnect keys new)`.
function COMMANDS.keys(args)
  -- status and rotate read the application's token table: its keys module owns them
  if (args[1] == "status" or args[1] == "rotate") and package.searchpath("keys", package.path) then
    return require("keys").main(args)
  end
  local kid = args[2] or os.date("!k%Y%m%d")
  if args[1] ~= "new" or #args > 2 then
    io.stderr:write("usage: multiconnect keys new [KID] | keys status [--json] | keys rotate [--batch N]\n")
    return 2
  end
  if #kid > 32 or not kid:match("^[%w_%-]+$") then
    io.stderr:write("multiconnect keys: KID must be 1 to 32 of A-Z a-z 0-9 _ -, got ", string.format("%q", kid), "\n")
    return 2
  end
  io.stdout:write(kid, ":", require("mc.crypto").new_key(), "\n")
  return 0
end

function COMMANDS.test(args)
  return require("mc.test").main(args)
end

function _M.main(...)
  local args = { ... }
  local name = table.remove(args, 1)
  if name == nil or name == "-h" or name == "--help" then name = "help" end
  if name == "-v" or name == "--version" then name = "version" end
  local command = COMMANDS[name]
  if not command then
    io.stderr:write(string.format("multiconnect: unknown command %q\n\n", name), USAGE)
    return 2
  end
  return command(args)
end

return _M
