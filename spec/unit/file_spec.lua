-- mc.file.read: a whole file, or nil, err, missing -- where `missing` tells "no
-- such file" (an optional file, such as a tenant's override, may be absent) from
-- every other failure (which must not be mistaken for absence).
local file = require "mc.file"
local proc = require "support.process"

describe("mc.file", function()
  local dir, cleanup

  before_each(function() dir, cleanup = proc.tmpdir() end)
  after_each(function() cleanup() end)

  it("reads a file whole and byte for byte, NUL bytes and CRLF included", function()
    local bytes = "line 1\r\nline 2\0after NUL\n\xff\xfe" .. string.rep("x", 70000)
    proc.write(dir .. "/data.bin", bytes)
    local got, err = file.read(dir .. "/data.bin")
    assert.is_nil(err)
    assert.equal(#bytes, #got)
    assert.equal(bytes, got)
  end)

  it("reads an empty file as the empty string, not as a failure", function()
    proc.write(dir .. "/empty", "")
    assert.same({ "" }, { file.read(dir .. "/empty") })
  end)

  it("answers a missing file with nil, the path in the error, and missing = true", function()
    local path = dir .. "/nope.lua"
    assert.same({ nil, path .. ": No such file or directory", true }, { file.read(path) })
    -- a missing directory on the way is the same: no such file
    assert.same({ nil, dir .. "/no/such.lua: No such file or directory", true }, { file.read(dir .. "/no/such.lua") })
  end)

  it("answers a directory with nil, an error naming it, and missing = false", function()
    os.execute("mkdir " .. proc.quote(dir .. "/sub"))
    assert.same({ nil, dir .. "/sub: Is a directory", false }, { file.read(dir .. "/sub") })
  end)

  it("answers a path through a regular file (ENOTDIR) as a failure, not as absence", function()
    proc.write(dir .. "/plain", "x")
    assert.same({ nil, dir .. "/plain/child: Not a directory", false }, { file.read(dir .. "/plain/child") })
  end)
end)
