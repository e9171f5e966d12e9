local cron = require "mc.cron"

-- utc(2024, 1, 1, 0, 0) -> epoch seconds (days-from-civil, independent of TZ)
local function utc(y, m, d, h, mi, s)
  y = m <= 2 and y - 1 or y
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + (h or 0) * 3600 + (mi or 0) * 60 + (s or 0)
end

local function matcher(expr)
  local m, err = cron.parse(expr)
  assert(m, err)
  return m
end

describe("mc.cron", function()
  it("computes the test epochs right", function()
    assert.equal(1704067200, utc(2024, 1, 1, 0, 0)) -- a Monday
    assert.equal("2024-02-29 13:45:07", os.date("!%Y-%m-%d %H:%M:%S", utc(2024, 2, 29, 13, 45, 7)))
  end)

  describe("parse", function()
    it("accepts the standard forms", function()
      for _, e in ipairs({ "* * * * *", "*/15 * * * *", "0 9-17 * * 1-5", "10-50/5 * * * *",
        "1,2,3 0 1 jan *", "0 0 * * SUN", "0 0 * * 7", "0 0 1-7 * mon", "  5  4  *  *  *  ",
        "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "0 0 * feb-apr sat-sun",
        "5/10 * * * *" }) do
        local m, err = cron.parse(e)
        assert(m, e .. ": " .. tostring(err))
      end
    end)

    local bad = {
      { "* * * *", "expected 5 fields" },
      { "* * * * * *", "expected 5 fields" },
      { "", "got 0" },
      { "60 * * * *", "minute \"60\": 60 is out of range 0-59" },
      { "* 24 * * *", "hour \"24\": 24 is out of range 0-23" },
      { "* * 0 * *", "day of month \"0\": 0 is out of range 1-31" },
      { "* * 32 * *", "day of month \"32\": 32 is out of range" },
      { "* * * 13 *", "month \"13\": 13 is out of range 1-12" },
      { "* * * * 8", "day of week \"8\": 8 is out of range 0-7" },
      { "* * * foo *", "month \"foo\": \"foo\" is not a month number or name" },
      { "* * * * mon-xyz", "\"xyz\" is not a day of week number or name" },
      { "*/0 * * * *", "step \"0\" is not a positive integer" },
      { "*/x * * * *", "step \"x\" is not a positive integer" },
      { "5-1 * * * *", "range 5-1 goes backwards" },
      { "1,,2 * * * *", "empty list item" },
      { "1, * * * *", "minute \"1,\" has an empty list item" },
      { "-1 * * * *", "minute \"-1\": \"-1\" is not a number" },
      { "* * * mon *", "\"mon\" is not a month number or name" },
    }
    for _, case in ipairs(bad) do
      local expr, message = case[1], case[2]
      if message then
        it("refuses " .. string.format("%q", expr), function()
          local m, err = cron.parse(expr)
          assert.is_nil(m)
          assert.truthy(err:find(message, 1, true), err)
          assert.truthy(err:find(expr, 1, true), "the error names the expression: " .. err)
        end)
      end
    end

    it("refuses a non-string", function()
      local m, err = cron.parse(5)
      assert.is_nil(m)
      assert.matches("must be a string", err)
    end)
  end)

  describe("matches", function()
    it("every minute matches any second of any minute", function()
      local m = matcher("* * * * *")
      assert.is_true(m:matches(utc(2024, 5, 17, 3, 4, 59)))
      assert.is_true(m:matches(utc(1999, 12, 31, 23, 59)))
    end)

    it("steps over the whole range and over a range", function()
      local m = matcher("*/15 * * * *")
      for _, mi in ipairs({ 0, 15, 30, 45 }) do assert.is_true(m:matches(utc(2024, 1, 1, 10, mi))) end
      for _, mi in ipairs({ 1, 14, 16, 59 }) do assert.is_false(m:matches(utc(2024, 1, 1, 10, mi))) end
      local r = matcher("10-50/20 * * * *")
      local got = {}
      for mi = 0, 59 do if r:matches(utc(2024, 1, 1, 0, mi)) then got[#got + 1] = mi end end
      assert.same({ 10, 30, 50 }, got)
      local open = matcher("50/4 * * * *")
      got = {}
      for mi = 0, 59 do if open:matches(utc(2024, 1, 1, 0, mi)) then got[#got + 1] = mi end end
      assert.same({ 50, 54, 58 }, got)
    end)

    it("lists and ranges of hours", function()
      local m = matcher("0 1,3,9-11 * * *")
      local got = {}
      for h = 0, 23 do if m:matches(utc(2024, 1, 1, h, 0)) then got[#got + 1] = h end end
      assert.same({ 1, 3, 9, 10, 11 }, got)
      assert.is_false(m:matches(utc(2024, 1, 1, 1, 1)))
    end)

    it("month and weekday names, case-insensitive", function()
      local m = matcher("30 12 * Feb-Mar MON-wed")
      assert.is_true(m:matches(utc(2024, 2, 5, 12, 30)))  -- Monday 5 February
      assert.is_true(m:matches(utc(2024, 3, 13, 12, 30))) -- Wednesday 13 March
      assert.is_false(m:matches(utc(2024, 3, 14, 12, 30))) -- Thursday
      assert.is_false(m:matches(utc(2024, 4, 1, 12, 30)))  -- Monday, but April
      local weekend = matcher("0 0 * * sat-sun")
      assert.is_true(weekend:matches(utc(2024, 1, 6, 0, 0)))
      assert.is_true(weekend:matches(utc(2024, 1, 7, 0, 0)))
      assert.is_false(weekend:matches(utc(2024, 1, 8, 0, 0)))
    end)

    it("Sunday is 0 and 7", function()
      local sunday = utc(2024, 1, 7, 0, 0)
      assert.is_true(matcher("0 0 * * 0"):matches(sunday))
      assert.is_true(matcher("0 0 * * 7"):matches(sunday))
      assert.is_true(matcher("0 0 * * sun"):matches(sunday))
      assert.is_true(matcher("0 0 * * 5-7"):matches(sunday))
      assert.is_false(matcher("0 0 * * 7"):matches(utc(2024, 1, 6, 0, 0)))
    end)

    it("day of month OR day of week when both are restricted", function()
      local m = matcher("0 0 13 * fri")
      assert.is_true(m:matches(utc(2024, 9, 13, 0, 0)))  -- Friday the 13th
      assert.is_true(m:matches(utc(2024, 1, 13, 0, 0)))  -- Saturday the 13th
      assert.is_true(m:matches(utc(2024, 1, 5, 0, 0)))   -- Friday the 5th
      assert.is_false(m:matches(utc(2024, 1, 6, 0, 0)))  -- Saturday the 6th
    end)

    it("day of month AND day of week when one is a star", function()
      local dom = matcher("0 0 13 * *")
      assert.is_true(dom:matches(utc(2024, 1, 13, 0, 0)))
      assert.is_false(dom:matches(utc(2024, 1, 5, 0, 0)))
      local dow = matcher("0 0 * * fri")
      assert.is_true(dow:matches(utc(2024, 1, 5, 0, 0)))
      assert.is_false(dow:matches(utc(2024, 1, 13, 0, 0)))
      -- */2 starts with a star: it does not turn on the OR rule (as in Vixie cron)
      local stepped = matcher("0 0 */2 * mon")
      assert.is_false(stepped:matches(utc(2024, 1, 3, 0, 0))) -- odd day, Wednesday
      assert.is_false(stepped:matches(utc(2024, 1, 2, 0, 0))) -- even day, Tuesday
      assert.is_true(stepped:matches(utc(2024, 1, 1, 0, 0)))  -- day 1, Monday
    end)

    it("the 31st only in months that have one; leap days", function()
      local m = matcher("0 0 31 * *")
      assert.is_true(m:matches(utc(2024, 1, 31, 0, 0)))
      assert.is_false(m:matches(utc(2024, 3, 1, 0, 0)))
      assert.is_true(matcher("0 0 29 2 *"):matches(utc(2024, 2, 29, 0, 0)))
    end)

    it("macros", function()
      assert.is_true(matcher("@hourly"):matches(utc(2024, 1, 1, 7, 0)))
      assert.is_false(matcher("@hourly"):matches(utc(2024, 1, 1, 7, 1)))
      assert.is_true(matcher("@weekly"):matches(utc(2024, 1, 7, 0, 0)))
      assert.is_false(matcher("@weekly"):matches(utc(2024, 1, 8, 0, 0)))
      assert.is_true(matcher("@yearly"):matches(utc(2025, 1, 1, 0, 0)))
    end)

    it("uses UTC and whole seconds", function()
      local m = matcher("59 23 31 12 *")
      assert.is_true(m:matches(utc(2023, 12, 31, 23, 59) + 59.999))
      assert.is_false(m:matches(utc(2024, 1, 1, 0, 0)))
    end)
  end)
end)
