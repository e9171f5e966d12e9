-- mc.cron: standard five-field cron expressions, in UTC.
--
--   local m, err = cron.parse("*/15 9-17 * * mon-fri")
--   if m:matches(os.time()) then ... end
--
-- Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 (or jan-dec),
-- day of week 0-7 (or sun-sat; 0 and 7 are Sunday). Each field is a comma list
-- of `*`, `N`, `N-M`, each optionally `/STEP` (`N/STEP` means N to the field's
-- maximum, as in most crons). Names are case-insensitive. As in Vixie cron, when
-- both day fields are restricted (neither starts with `*`), a day matches if
-- either does; otherwise both must. `@hourly`, `@daily` (`@midnight`),
-- `@weekly`, `@monthly`, `@yearly` (`@annually`) stand for their expansions.
local _M = {}

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }
local DAYS = { sun = 0, mon = 1, tue = 2, wed = 3, thu = 4, fri = 5, sat = 6 }

local FIELDS = {
  { name = "minute", min = 0, max = 59 },
  { name = "hour", min = 0, max = 23 },
  { name = "day of month", min = 1, max = 31 },
  { name = "month", min = 1, max = 12, names = MONTHS },
  { name = "day of week", min = 0, max = 7, names = DAYS },
}

local MACROS = {
  ["@yearly"] = "0 0 1 1 *", ["@annually"] = "0 0 1 1 *", ["@monthly"] = "0 0 1 * *",
  ["@weekly"] = "0 0 * * 0", ["@daily"] = "0 0 * * *", ["@midnight"] = "0 0 * * *",
  ["@hourly"] = "0 * * * *",
}

-- value(text, field) -> integer | nil, err
local function value(text, field)
  local n
  if text:match("^%d+$") then
    n = tonumber(text)
  elseif field.names and field.names[text:lower()] then
    n = field.names[text:lower()]
  else
    return nil, string.format("%q is not a %s", text, field.names and field.name .. " number or name" or "number")
  end
  if n < field.min or n > field.max then
    return nil, string.format("%d is out of range %d-%d", n, field.min, field.max)
  end
  return n
end

-- item("10-50/5", field, set) -> true | nil, err; adds the values to set.
local function item(text, field, set)
  local range, step = text:match("^([^/]+)/(.*)$")
  if not range then range = text end
  local lo, hi
  if range == "*" then
    lo, hi = field.min, field.max
  else
    local a, b = range:match("^([^-]+)-(.+)$")
    local err
    lo, err = value(a or range, field)
    if not lo then return nil, err end
    if b then
      hi, err = value(b, field)
      if not hi then return nil, err end
      if hi == 0 and field.max == 7 then hi = 7 end -- sat-sun: Sunday as 7
      if hi < lo then return nil, string.format("range %s goes backwards", range) end
    else
      hi = step and field.max or lo
    end
  end
  local by = 1
  if step then
    if not step:match("^%d+$") or tonumber(step) < 1 then
      return nil, string.format("step %q is not a positive integer", step)
    end
    by = tonumber(step)
  end
  for v = lo, hi, by do set[v] = true end
  return true
end

-- field(text, spec) -> set | nil, err
local function field(text, spec)
  local set = {}
  if text:sub(-1) == "," or text:sub(1, 1) == "," or text:find(",,", 1, true) then
    return nil, string.format("%s %q has an empty list item", spec.name, text)
  end
  for part in text:gmatch("[^,]+") do
    local ok, err = item(part, spec, set)
    if not ok then return nil, string.format("%s %q: %s", spec.name, text, err) end
  end
  return set
end

local Matcher = {}
Matcher.__index = Matcher

-- matcher:matches(epoch) -> boolean: whether the minute holding epoch matches (UTC).
function Matcher:matches(epoch)
  local t = os.date("!*t", math.floor(epoch))
  if not (self.minute[t.min] and self.hour[t.hour] and self.month[t.month]) then return false end
  -- sets hold true or nothing: compare, so that a miss is false, not nil
  local dom, dow = self.dom[t.day] == true, self.dow[t.wday - 1] == true
  if self.dom_star or self.dow_star then return dom and dow end
  return dom or dow
end

function Matcher:__tostring()
  return "cron(" .. self.expr .. ")"
end

-- parse(expr) -> matcher | nil, err
function _M.parse(expr)
  if type(expr) ~= "string" then return nil, "cron expression must be a string" end
  local text = MACROS[expr:lower():match("^%s*(.-)%s*$")] or expr
  local parts = {}
  for p in text:gmatch("%S+") do parts[#parts + 1] = p end
  if #parts ~= 5 then
    return nil, string.format("cron %q: expected 5 fields (minute hour day month weekday), got %d",
      expr, #parts)
  end
  local sets = {}
  for i, spec in ipairs(FIELDS) do
    local set, err = field(parts[i], spec)
    if not set then return nil, string.format("cron %q: %s", expr, err) end
    sets[i] = set
  end
  if sets[5][7] then sets[5][0] = true end
  return setmetatable({
    expr = expr, minute = sets[1], hour = sets[2], dom = sets[3], month = sets[4], dow = sets[5],
    dom_star = parts[3]:sub(1, 1) == "*", dow_star = parts[5]:sub(1, 1) == "*",
  }, Matcher)
end

return _M
