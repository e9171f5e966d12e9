-- mc.sched: many coroutines on one thread, each resumed when what it waits on is
-- ready. A coroutine spawned here is "adopted" (core/sched.c): inside it, mc.http,
-- mc.redis and mc.pg yield while they wait on the network instead of blocking, and
-- the scheduler's step() polls every waiting socket and HTTP transfer at once
-- (OpenResty's cosockets, with the same rule: the code reads as blocking code).
--
--   local s = sched.new()
--   s:spawn(function() return http.get(url) end, function(ok, res) ... end)
--   while s:count() > 0 do s:step(1) end
local native = require "mc.sched_native"

local create, resume, status, running = coroutine.create, coroutine.resume, coroutine.status,
  coroutine.running
local yield, isyieldable = coroutine.yield, coroutine.isyieldable
local now_ms = native.now_ms
local TOKEN = native.TOKEN

local _M = {}

local S = {}
S.__index = S

-- new() -> a scheduler (use it from one thread of one Lua state)
function _M.new()
  return setmetatable({
    n = 0,
    waits = {},   -- co -> {key, fd, events, deadline}; deadline 0: none
    by_key = {},  -- HTTP transfer key -> co
    done = {},    -- co -> on_done(ok, ...)
    soon = {},    -- coroutines to resume on the next step (a bare yield)
  }, S)
end

-- adopted() -> whether the running coroutine is one a scheduler runs (and can yield)
_M.adopted = native.adopted

-- What a coroutine yields to end its task but stay for another (S:reuse): its
-- task finishes as if the coroutine had returned, and nothing resumes it until
-- it is reused. Saves a coroutine and its grown stack per task (web requests).
local PARK = setmetatable({}, { __name = "sched.PARK" })
_M.PARK = PARK

-- sleep(seconds): in an adopted coroutine, yields that long; elsewhere, false
-- (the caller decides whether to block instead).
function _M.sleep(seconds)
  if not native.adopted() then return false end
  yield(TOKEN, nil, -1, 0, now_ms() + seconds * 1000)
  return true
end

function S:finish(co, ok, ...)
  native.adopt(co, false) -- parked too: adopted coroutines are the ones with a task
  self.n = self.n - 1
  local on_done = self.done[co]
  self.done[co] = nil
  if on_done then on_done(ok, ...) end
end

-- Resumes co and files what it waits on next, or finishes it.
function S:run(co, ...)
  return self:settle(co, resume(co, ...))
end

function S:settle(co, ...)
  if status(co) == "dead" then return self:finish(co, ...) end
  local _, tag, key, fd, events, deadline = ...
  if tag == PARK then return self:finish(co, true) end
  if tag ~= TOKEN then -- a yield of the job's own: it goes on at the next step
    self.soon[#self.soon + 1] = co
    return
  end
  self.waits[co] = { key, fd, events, deadline }
  if key ~= nil then self.by_key[key] = co end
end

-- spawn(fn, on_done, ...): runs fn(...) in a new adopted coroutine up to its first
-- wait; on_done(ok, results or error) when it ends.
function S:spawn(fn, on_done, ...)
  local co = create(fn)
  native.adopt(co)
  self.n = self.n + 1
  self.done[co] = on_done
  return self:run(co, ...)
end

-- reuse(co, on_done, ...): resumes co, parked (it yielded sched.PARK at the end of
-- its last task), with ... as the yield's results: its next task, adopted again.
function S:reuse(co, on_done, ...)
  native.adopt(co)
  self.n = self.n + 1
  self.done[co] = on_done
  return self:run(co, ...)
end

-- count() -> coroutines not finished
function S:count() return self.n end

local function wake(self, co)
  local w = self.waits[co]
  if not w then return end
  self.waits[co] = nil
  if w[1] ~= nil then self.by_key[w[1]] = nil end
  self:run(co)
end

-- step(max_seconds[, wake_fd]): waits (at most that long, less when a deadline is
-- nearer) for something a coroutine waits on, and resumes those that can go on.
-- wake_fd readable ends the wait too (the web server's own events).
function S:step(max_seconds, wake_fd)
  local soon = self.soon
  if #soon > 0 then
    self.soon = {}
    for _, co in ipairs(soon) do self:run(co) end
  end
  local fds, events, owners, n = {}, {}, {}, 0
  local now = now_ms()
  local timeout = #self.soon > 0 and 0 or (max_seconds or 1) * 1000
  if wake_fd then n, fds[1], events[1] = 1, wake_fd, native.POLLIN end
  for co, w in pairs(self.waits) do
    if w[2] >= 0 then
      n = n + 1
      fds[n], events[n], owners[n] = w[2], w[3], co
    end
    if w[4] > 0 and w[4] - now < timeout then timeout = math.max(0, w[4] - now) end
  end
  local ready, done = native.poll(fds, events, timeout)
  for _, i in ipairs(ready) do wake(self, owners[i]) end
  for _, key in ipairs(done) do
    local co = self.by_key[key]
    if co then wake(self, co) end
  end
  now = now_ms()
  local due = {}
  for co, w in pairs(self.waits) do
    if w[4] > 0 and w[4] <= now then due[#due + 1] = co end
  end
  for _, co in ipairs(due) do wake(self, co) end
end

-- wait_until(cond, seconds): in an adopted coroutine, yields in short naps until
-- cond() is true or the time is up (-> cond()'s last answer). For waits on
-- something another coroutine of the same scheduler releases (a pooled connection).
function _M.wait_until(cond, seconds)
  local deadline = now_ms() + seconds * 1000
  local v = cond()
  while not v and now_ms() < deadline and isyieldable() and native.adopted(running()) do
    yield(TOKEN, nil, -1, 0, now_ms() + 10)
    v = cond()
  end
  return v
end

return _M
