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
  ["bin/npm"] = [[#!/bin/sh
echo "npm $* in $(basename "$PWD")" >>"$FAKE_CALLS"
[ -z "${FAKE_NPM_FAIL:-}" ] || { echo "npm ERR! network" >&2; exit 1; }
mkdir -p node_modules
]],
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
      FAKE_CALLS = dir .. "/calls", FAKE_MISSING = "", FAKE_APT_FAIL = "", MC_NODE_DEPS = "off" }
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
    assert.matches("no group compilers (build, libraries, services, test, package, browser)", r.stderr, 1, true)
  end)

  it("wants debootstrap for make image-check", function()
    local r = setup({ "--check" }, { FAKE_MISSING = "debootstrap" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: debootstrap", r.stderr, 1, true)
  end)

  it("wants lua-check, cppcheck and clang-format (in the test group) for make lint", function()
    local r = setup({ "--check", "test" }, { FAKE_MISSING = "lua-check cppcheck clang-format" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: lua-check cppcheck clang-format", r.stderr, 1, true)
  end)

  it("wants clang and its libFuzzer runtime (in the test group) for make fuzz-replay", function()
    local r = setup({ "--check", "test" }, { FAKE_MISSING = "clang libclang-rt-14-dev" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: clang libclang-rt-14-dev", r.stderr, 1, true)
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
  it("treats the browser group as optional: a failed install is a warning, and the rest goes on", function()
    local r = setup({ "--quiet" }, { FAKE_MISSING = "chromium", FAKE_APT_FAIL = "chromium" })
    assert.equal(0, r.code, r.stderr)
    assert.matches("setup: installing browser specs (optional): chromium", r.stdout, 1, true)
    assert.matches("warning: installing browser specs (optional) failed (the browser specs will be skipped)",
      r.stderr, 1, true)
  end)

  it("runs npm ci in a tools/*/ folder when its package-lock.json changed, and only then", function()
    local root = dir .. "/project"
    assert(os.execute("mkdir -p " .. proc.quote(root .. "/tools/browser") .. " && cp " .. proc.quote(SETUP) .. " "
      .. proc.quote(root .. "/tools/setup")))
    proc.write(root .. "/tools/browser/package-lock.json", '{"lockfileVersion": 3}')
    local function run(env) return proc.run({ root .. "/tools/setup", "--quiet" }, { env = env }) end
    local env = { PATH = dir .. "/bin:" .. os.getenv("PATH"), MC_VAR = dir .. "/var", FAKE_CALLS = dir .. "/calls",
      FAKE_MISSING = "", FAKE_APT_FAIL = "" }
    local r = run(env)
    assert.equal(0, r.code, r.stderr)
    assert.equal("setup: npm ci in tools/browser\n", r.stdout)
    assert.equal("npm ci --no-audit --no-fund in browser\n", assert(io.open(dir .. "/calls")):read("a"))
    assert.equal("", run(env).stdout) -- the same lock: nothing to do
    proc.write(root .. "/tools/browser/package-lock.json", '{"lockfileVersion": 3, "changed": true}')
    env.FAKE_NPM_FAIL = "1"
    r = run(env)
    assert.equal(0, r.code) -- a warning, not a failure
    assert.matches("npm ci in tools/browser failed (the browser specs will be skipped)", r.stderr, 1, true)
    local check = proc.run({ root .. "/tools/setup", "--check" }, { env = env })
    assert.equal(1, check.code)
    assert.matches("tools/browser: npm packages not installed from its package-lock.json", check.stderr, 1, true)
  end)
end)

-- The npm half: tools/setup copied into a scratch project (its ROOT), with a
-- lock file in tools/package and a stand-in npm that records its calls and
-- makes node_modules (or fails when FAKE_NPM_FAIL is set).
describe("tools/setup: the package checks' npm packages", function()
  local dir, cleanup
  local NPM = [[#!/bin/sh
echo "npm $* in $(pwd)" >>"$FAKE_CALLS"
if [ -n "${FAKE_NPM_FAIL:-}" ]; then echo "npm ERR! network $FAKE_NPM_FAIL" >&2; exit 1; fi
mkdir -p node_modules/@apexdevtools
echo "added 242 packages"
]]

  before_each(function()
    dir, cleanup = proc.project({
      ["tools/setup"] = assert(io.open(SETUP)):read("a"),
      ["tools/package/package-lock.json"] = '{"lockfileVersion": 3}\n',
      ["bin/npm"] = NPM, ["bin/node"] = "#!/bin/sh\n",
      ["bin/dpkg-query"] = FAKES["bin/dpkg-query"],
    })
    os.execute("chmod +x " .. proc.quote(dir) .. "/bin/* " .. proc.quote(dir) .. "/tools/setup")
  end)
  after_each(function() cleanup() end)

  local function setup(args, env)
    local e = { PATH = dir .. "/bin:" .. os.getenv("PATH"), MC_VAR = dir .. "/var",
      FAKE_CALLS = dir .. "/calls", FAKE_MISSING = "", FAKE_NPM_FAIL = "" }
    for k, v in pairs(env or {}) do e[k] = v end
    return proc.run({ dir .. "/tools/setup", table.unpack(args) }, { env = e })
  end
  local function calls()
    local f = io.open(dir .. "/calls")
    if not f then return "" end
    local s = f:read("a")
    f:close()
    return s
  end

  it("runs npm ci in tools/package once, then says nothing", function()
    local r = setup({ "--quiet" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("setup: npm ci in tools/package\n", r.stdout)
    assert.equal("npm ci --no-audit --no-fund in " .. dir .. "/tools/package\n", calls())
    assert.matches("added 242 packages", assert(io.open(dir .. "/var/setup.log")):read("a"), 1, true)
    r = setup({ "--quiet" })
    assert.equal(0, r.code, r.stderr)
    assert.equal("", r.stdout)
    assert.equal(1, select(2, calls():gsub("npm ci", "")))
  end)

  it("runs it again when the lock file changes, and --check says it is stale", function()
    assert.equal(0, setup({ "--quiet" }).code)
    proc.write(dir .. "/tools/package/package-lock.json", '{"lockfileVersion": 3, "packages": {}}\n')
    local r = setup({ "--check" })
    assert.equal(1, r.code)
    assert.matches("tools/package: npm packages not installed from its package-lock.json", r.stderr, 1, true)
    assert.equal(0, setup({ "--quiet" }).code)
    assert.equal(2, select(2, calls():gsub("npm ci", "")))
  end)

  it("on a failed npm ci prints the log's tail and fails, and tries again next time", function()
    local r = setup({ "--quiet" }, { FAKE_NPM_FAIL = "ETIMEDOUT" })
    assert.equal(1, r.code)
    assert.matches("npm ci in tools/package failed", r.stderr, 1, true)
    assert.matches("npm ERR! network ETIMEDOUT", r.stderr, 1, true)
    assert.equal(0, setup({ "--quiet" }).code)
    assert.equal(2, select(2, calls():gsub("npm ci", "")))
  end)

  it("wants Debian's nodejs and npm when node or npm is not on PATH", function()
    -- a PATH of only the tools setup uses: node and npm are nowhere on it
    os.remove(dir .. "/bin/node")
    for _, tool in ipairs({ "sh", "dirname", "cut", "tr", "id", "cmp", "mkdir", "tail", "cat", "sha256sum", "grep" }) do
      os.execute("ln -s \"$(command -v " .. tool .. ")\" " .. proc.quote(dir .. "/bin/" .. tool))
    end
    local r = setup({ "--check" }, { PATH = dir .. "/bin", FAKE_MISSING = "nodejs npm" })
    assert.equal(1, r.code)
    assert.matches("missing Debian packages: nodejs npm", r.stderr, 1, true)
  end)
end)
