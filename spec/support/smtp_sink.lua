-- support.smtp_sink: a tiny SMTP server for specs, over lua-socket. Run it as a
-- process of its own (mc.mail blocks in libcurl while it talks to it):
--   bin/multiconnect run spec/support/smtp_sink.lua PORT RECORD_FILE
-- It prints "listening" once bound, serves one connection at a time, and appends
-- one JSON line per accepted message to RECORD_FILE before it answers 250:
--   {"helo", "user", "password", "from", "rcpt": [...], "data": raw DATA with CRLFs}
-- (data is un-dot-stuffed, without the final ".").
-- The recipient steers the reply, so one sink serves every case of a spec:
--   tempfail@...  RCPT  451        permfail@...  RCPT  550
--   tempdata@...  after DATA 452   permdata@...  after DATA 554
--   stall@...     no answer to RCPT, ever (the client's timeout must fire)
-- AUTH PLAIN is offered; the user "bad" is refused with 535. No STARTTLS.
local socket = require "socket"
local mime = require "mime"
local json = require "mc.json"

local port, record_path = tonumber(arg[1]), arg[2]
assert(port and record_path, "usage: smtp_sink.lua PORT RECORD_FILE")

local server = assert(socket.bind("127.0.0.1", port))
print("at=info msg=listening port=" .. port)
io.stdout:flush()

local stalled = {} -- connections left unanswered on purpose, kept so GC does not close them

-- One raw line, CRLF (or a bare LF) included; nil when the client went away.
local function read_line(c)
  local buf = {}
  while true do
    local ch = c:receive(1)
    if not ch then return nil end
    buf[#buf + 1] = ch
    if ch == "\n" then return table.concat(buf) end
  end
end

local function reply(c, text)
  c:send(text .. "\r\n")
end

local function record(msg)
  local f = assert(io.open(record_path, "a"))
  f:write(json.encode(msg), "\n")
  f:close()
end

local function auth_plain(c, initial)
  local b64 = initial
  if not b64 or b64 == "" then
    reply(c, "334 ")
    b64 = (read_line(c) or ""):gsub("[\r\n]", "")
  end
  local decoded = mime.unb64(b64) or ""
  local user, password = decoded:match("^[^%z]*%z([^%z]*)%z(.*)$")
  if not user or user == "bad" then
    reply(c, "535 5.7.8 authentication failed")
    return nil
  end
  reply(c, "235 2.7.0 accepted")
  return user, password
end

-- DATA until "." alone; undoes the dot-stuffing.
local function read_data(c)
  local lines = {}
  while true do
    local line = read_line(c)
    if not line then return nil end
    if line == ".\r\n" or line == ".\n" then return table.concat(lines) end
    if line:sub(1, 2) == ".." then line = line:sub(2) end
    lines[#lines + 1] = line
  end
end

-- Serves one connection; returns when it ends (or is left stalled).
local function serve(c)
  c:settimeout(30)
  local msg = { rcpt = {} }
  reply(c, "220 sink.test ESMTP")
  while true do
    local line = read_line(c)
    if not line then return end
    local verb, rest = line:gsub("[\r\n]+$", ""):match("^(%S*)%s*(.-)$")
    verb = verb:upper()
    if verb == "EHLO" or verb == "HELO" then
      msg.helo = rest
      if verb == "EHLO" then c:send("250-sink.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
      else reply(c, "250 sink.test") end
    elseif verb == "AUTH" then
      local mech, initial = rest:match("^(%S+)%s*(%S*)")
      if (mech or ""):upper() ~= "PLAIN" then reply(c, "504 5.5.4 mechanism not supported")
      else msg.user, msg.password = auth_plain(c, initial) end
    elseif verb == "MAIL" then
      msg.from = rest:match("<(.-)>")
      msg.rcpt = {}
      reply(c, "250 2.1.0 ok")
    elseif verb == "RCPT" then
      local to = rest:match("<(.-)>") or ""
      local who = to:match("^([^@]*)")
      if who == "stall" then
        stalled[c] = true
        return
      elseif who == "tempfail" then reply(c, "451 4.3.0 try again later")
      elseif who == "permfail" then reply(c, "550 5.1.1 no such user")
      else
        msg.rcpt[#msg.rcpt + 1] = to
        reply(c, "250 2.1.5 ok")
      end
    elseif verb == "DATA" then
      reply(c, "354 end with <CRLF>.<CRLF>")
      local data = read_data(c)
      if not data then return end
      local who = (msg.rcpt[1] or ""):match("^([^@]*)")
      if who == "tempdata" then reply(c, "452 4.3.1 insufficient storage")
      elseif who == "permdata" then reply(c, "554 5.6.0 message refused")
      else
        msg.data = data
        record(msg)
        reply(c, "250 2.0.0 queued")
      end
    elseif verb == "RSET" then
      msg.from, msg.rcpt = nil, {}
      reply(c, "250 2.0.0 ok")
    elseif verb == "NOOP" then
      reply(c, "250 2.0.0 ok")
    elseif verb == "QUIT" then
      reply(c, "221 2.0.0 bye")
      c:close()
      return
    else
      reply(c, "502 5.5.2 command not recognized")
    end
  end
end

while true do
  local c = server:accept()
  if c then
    serve(c)
    if not stalled[c] then c:close() end
  end
end
