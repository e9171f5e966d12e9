-- sandbox/admin.lua SANDBOX_PID: the simulated org admin. Started by the SendGrid
-- stand-in when knob sendgrid.simulated_admin is on, as a process of its own (so
-- that no server thread waits on the chain of redirects a link may start), it
-- reads each message the stand-in queues for it (sandbox:sendgrid:admin:queue, the
-- message as the mailbox holds it) and follows each of its links whose URL matches
-- knob sendgrid.admin_follow (a Lua pattern; default: every link) as a browser
-- would, redirects included, after knob sendgrid.admin_delay seconds. Many
-- messages at once, each in a coroutine of its own (mc.sched), as many admins
-- would read their own mail. What happened is kept in sandbox:sendgrid:admin (GET
-- /__sandbox/state shows it).
-- The admin is the mail's (first) recipient, logged in to Salesforce as that user:
-- every request, redirects included, carries X-Sandbox-Login: <recipient>, which the
-- Salesforce and Connect authorize pages take as the browser's session. (It stands
-- for Salesforce's session cookie; a custom header is what libcurl keeps sending
-- across hosts and ports, where it drops Cookie and Authorization.)
-- One process reads for a sandbox, for as long as that sandbox (SANDBOX_PID) runs:
-- it holds sandbox:sendgrid:admin:reader (its pid, renewed every second, kept 5 s),
-- and the stand-in starts one when that key is missing.
local host = require "mc.host"
local file = require "mc.file"
package.path = host.root .. "/?.lua;" .. package.path
local store = require "sandbox.store"
local http = require "mc.http"
local json = require "mc.json"
local log = require "mc.log"
local sched = require "mc.sched"

local sandbox_pid = ...
if not tostring(sandbox_pid or ""):match("^%d+$") then return nil, "usage: admin.lua SANDBOX_PID" end

local QUEUE, READER, LEASE = store.key("sendgrid", "admin", "queue"), store.key("sendgrid", "admin", "reader"), 5

local pid = tostring(host.pid())

local function alive(p) return file.exists("/proc/" .. p .. "/stat") end

-- holds the reader's key -> false when another reader holds it (two started
-- together, or after a reset: the later one keeps reading, this one stops)
local function hold()
  local holder = store.call("GET", READER)
  if holder ~= mc.null and holder ~= "starting" and holder ~= pid then return false end
  store.call("SET", READER, pid, "EX", LEASE)
  return true
end

-- In a coroutine of its own: only the network here (the store's one Redis
-- connection is the main loop's) -> the visits' records
local function read(msg, delay, pattern)
  sched.sleep(delay)
  local login = (msg.to or {})[1]
  local records = {}
  for _, link in ipairs(msg.links or {}) do
    if link:find(pattern) then
      local res, err = http.get(link, { follow = 10, timeout = 30, headers = { ["X-Sandbox-Login"] = login } })
      records[#records + 1] = { message = msg.id, link = link, login = login or mc.null,
                                status = res and res.status or mc.null, error = err or mc.null }
    end
  end
  return records
end

local function recorded(ok, records)
  if not ok then
    log.error("simulated admin failed reading a message", { err = tostring(records) })
    return
  end
  for _, r in ipairs(records) do
    store.call("RPUSH", store.key("sendgrid", "admin"), json.encode(r))
    log.info("simulated admin followed a link", { message = r.message, link = r.link, status = r.status,
      error = r.error ~= mc.null and r.error or nil })
  end
end

local s = sched.new()
local function take(raw)
  local msg = json.decode(raw)
  if type(msg) ~= "table" then
    log.error("simulated admin: not a message", { raw = raw })
    return
  end
  local delay = tonumber(store.knob("sendgrid", "admin_delay", 0)) or 0
  s:spawn(read, recorded, msg, delay, store.knob("sendgrid", "admin_follow", ""))
end

local held_at, reading = 0, true
while reading or s:count() > 0 do
  if host.now() - held_at >= 1 then
    reading = reading and alive(sandbox_pid) and hold()
    held_at = host.now()
  end
  if reading and s:count() == 0 then
    local got = store.call("BLPOP", QUEUE, 1) -- nothing in flight: wait for mail here
    if got ~= mc.null then take(got[2]) end
  else
    s:step(0.05)
  end
  while reading do
    local raw = store.call("LPOP", QUEUE)
    if raw == mc.null then break end
    take(raw)
  end
end
-- the next mail starts a reader at once, not once the key has expired
if store.call("GET", READER) == pid then store.call("DEL", READER) end
return 0
