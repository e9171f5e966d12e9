-- bench/json.lua -- mc.json.decode's cost on what the web process decodes: the
-- ~300-byte body of bench/web's POST (an install callback's size) and a 1 MB
-- document of many small objects (WEB_MAX_BODY's default). Prints microseconds
-- per decode and MB/s; compare two builds with the same script:
--   bin/multiconnect run bench/json.lua [seconds per case = 2]
local json = require "mc.json"
local host = require "mc.host"

local SECONDS = tonumber(arg[1]) or 2

local SMALL = json.encode({ org_id = "00D5e000000HoStEAK", org_name = "Acme Widgets International",
  admin_email = "admin@acme.example", installer_id = "0055e000001XyZwAAK", is_upgrade = false,
  is_push = false, previous_version = "1.2.3", environment = "production", package_version = "1.4",
  nonce = "a1b2c3d4e5f6a1b2c3d4e5f6", tags = { "a", "b", "c" }, score = 12.5 })

local items = {}
for i = 1, 9000 do items[i] = { id = i, name = "item " .. i, ok = i % 2 == 0, ratio = i / 7 } end
local LARGE = json.encode({ items = items })

local function run(name, text)
  local n, t0 = 0, host.now()
  repeat
    for _ = 1, 100 do assert(json.decode(text)) end
    n = n + 100
  until host.now() - t0 >= SECONDS
  local per = (host.now() - t0) / n
  print(string.format("%-6s %8d bytes  %10.2f us/decode  %7.1f MB/s", name, #text, per * 1e6, #text / per / 1e6))
end

run("small", SMALL)
run("large", LARGE)
