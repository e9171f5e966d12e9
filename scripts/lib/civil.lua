-- lib.civil: calendar arithmetic in UTC, for time stamps the APIs write
-- (os.time would read the fields as local time).
local _M = {}

-- days(y, m, d) -> days since 1970-01-01 of a civil date (proleptic Gregorian;
-- Howard Hinnant's days_from_civil algorithm).
function _M.days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

return _M
