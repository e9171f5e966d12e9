-- mc.test_output: busted output handler. A dot per test (F failed, E error,
-- s skipped) while running, then each failure with its place and message, then
-- one closing line: "N passed, N failed" (", N skipped" when some were), where
-- failed counts errors too. tools/test sums these lines over the suites.
return function(options)
  local busted = require "busted"
  local pretty = require "pl.pretty"
  local handler = require("busted.outputHandlers.base")()

  local MARKS = { success = ".", failure = "F", error = "E", pending = "s" }

  local function message_of(failure)
    if type(failure.message) == "string" then return failure.message end
    if failure.message == nil then return "nil error" end
    return pretty.write(failure.message)
  end

  local function describe(failure, kind)
    local where = ""
    local trace = failure.element and failure.element.trace
    if trace and trace.short_src then
      where = string.format(" (%s:%s)", trace.short_src, trace.currentline)
    end
    local text = string.format("%s: %s%s\n  %s", kind, failure.name or "?", where,
      message_of(failure):gsub("\n", "\n  "))
    if options.verbose and failure.trace and failure.trace.traceback then
      text = text .. "\n" .. failure.trace.traceback
    end
    return text
  end

  handler.testEnd = function(element, _, status)
    if options.verbose then
      io.write(string.format("%-7s %s\n", status, handler.getFullName(element)))
    else
      io.write(MARKS[status] or "?")
    end
    io.flush()
    return nil, true
  end

  handler.suiteEnd = function()
    io.write("\n")
    for _, f in ipairs(handler.failures) do io.write("\n", describe(f, "FAIL"), "\n") end
    for _, e in ipairs(handler.errors) do io.write("\n", describe(e, "ERROR"), "\n") end
    local failed = handler.failuresCount + handler.errorsCount
    local line = string.format("%d passed, %d failed", handler.successesCount, failed)
    if handler.pendingsCount > 0 then
      line = line .. string.format(", %d skipped", handler.pendingsCount)
    end
    io.write(string.format("\n%.2f s\n%s\n", handler.getDuration(), line))
    io.flush()
    return nil, true
  end

  handler.fileError = function()
    io.write("E")
    io.flush()
    return nil, true
  end

  busted.subscribe({ "test", "end" }, handler.testEnd, { predicate = handler.cancelOnPending })
  busted.subscribe({ "suite", "end" }, handler.suiteEnd)
  busted.subscribe({ "error", "file" }, handler.fileError)
  busted.subscribe({ "failure", "file" }, handler.fileError)
  busted.subscribe({ "error", "describe" }, handler.fileError)
  busted.subscribe({ "failure", "describe" }, handler.fileError)

  return handler
end
