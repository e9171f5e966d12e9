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

  it("limits itself to the groups named (the container build wants build and libraries only)", function()
    local r = setup({ "--check", "build", "libraries" }, { FAKE_MISSING = "curl redis-server" })
    assert.equal(0, r.code, r.stderr)
    r = setup({ "--check", "build", "libraries" }, { FAKE_MISSING = "curl libpq-dev" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: libpq-dev\n", r.stderr, 1, true)
    r = setup({ "--check", "compilers" })
    assert.equal(2, r.code)
    assert.matches("no group compilers (build, libraries, services, test)", r.stderr, 1, true)
  end)

  it("wants debootstrap for make image-check", function()
    local r = setup({ "--check" }, { FAKE_MISSING = "debootstrap" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: debootstrap", r.stderr, 1, true)
  end)

  local function lines(s)
    local out = {}
    for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  it("installs quietly: one line per group, apt's output in $MC_VAR/setup.log", function()
    local r = setup({ "--quiet" }, { FAKE_MISSING = "make gcc redis-server curl" })
    assert.equal(0, r.code, r.stderr)
    assert.same({
      "setup: installing build tools: gcc make",
      "setup: installing services: redis-server",
      "setup: installing test and dev tools: curl",
      "setup: done (apt's output: " .. dir .. "/var/setup.log)",
    }, lines(r.stdout))
    assert.equal("", r.stderr)
    local log = assert(io.open(dir .. "/var/setup.log")):read("a")
    assert.matches("Reading package lists", log, 1, true)
    assert.matches("Setting up install .*gcc make", log)
    local calls = assert(io.open(dir .. "/calls")):read("a")
    assert.matches("^apt%-get update", calls)
    assert.matches("install [^\n]*curl", calls)
  end)

  it("on a failed install prints the log's tail and its path, and fails", function()
    local r = setup({ "--quiet" }, { FAKE_MISSING = "gcc curl", FAKE_APT_FAIL = "gcc" })
    assert.equal(1, r.code)
    assert.equal("setup: installing build tools: gcc\n", r.stdout)
    assert.matches("E: Unable to locate package gcc", r.stderr, 1, true)
    assert.matches(dir .. "/var/setup.log", r.stderr, 1, true)
    assert.is_nil(r.stdout:find("test and dev tools", 1, true)) -- stopped at the first failure
  end)
end)
