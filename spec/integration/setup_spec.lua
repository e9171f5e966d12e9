-- tools/setup (`make setup`, and `make` through `deps`) against stand-ins for
-- dpkg-query and apt-get: FAKE_MISSING names the packages "not installed", and
-- apt-get writes what a real one would (or fails when FAKE_APT_FAIL is set).
local host = require "mc.host"
local proc = require "support.process"

local SETUP = host.root .. "/tools/setup"

local FAKES = {
  ["bin/dpkg-query"] = [[#!/bin/sh
for p in $FAKE_MISSING; do
  [ "$p" = "$3" ] && { printf 'not-installed'; exit 0; }
done
printf 'installed'
]],
  ["bin/apt-get"] = [[#!/bin/sh
echo "apt-get $*" >>"$FAKE_CALLS"
echo "Reading package lists... Done"
echo "Building dependency tree... Done"
if [ "$1" = install ] && [ -n "${FAKE_APT_FAIL:-}" ]; then
  echo "E: Unable to locate package $FAKE_APT_FAIL" >&2
  exit 100
fi
echo "Setting up $*"
]],
  ["bin/sudo"] = '#!/bin/sh\nexec "$@"\n', -- a non-root run goes through sudo
}

describe("tools/setup", function()
  local dir, cleanup

  before_each(function()
    dir, cleanup = proc.project(FAKES)
    os.execute("chmod +x " .. proc.quote(dir) .. "/bin/*")
  end)
  after_each(function() cleanup() end)

  local function setup(args, env)
    local e = { PATH = dir .. "/bin:" .. os.getenv("PATH"), MC_VAR = dir .. "/var",
      FAKE_CALLS = dir .. "/calls", FAKE_MISSING = "", FAKE_APT_FAIL = "" }
    for k, v in pairs(env or {}) do e[k] = v end
    return proc.run({ SETUP, table.unpack(args) }, { env = e })
  end

  it("says nothing with --quiet, and installs nothing, when every package is there", function()
    local r = setup({ "--quiet" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("", r.stdout)
    assert.equal("", r.stderr)
    assert.is_nil(io.open(dir .. "/calls"))
  end)

  it("wants curl (tools/callback and the README use it)", function()
    local r = setup({ "--check" }, { FAKE_MISSING = "curl" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: curl", r.stderr, 1, true)
  end)
end)
