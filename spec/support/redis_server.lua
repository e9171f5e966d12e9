-- support.redis_server: a private redis-server on a free port, for the specs
-- that need one of their own (a password, TLS with a self-signed certificate
-- as Heroku Redis has).
local proc = require "support.process"
local support_server = require "support.server"

local _M = {}

-- self_signed(dir) -> {cert =, key =}: a certificate for localhost, made here
function _M.self_signed(dir)
  local tls = { cert = dir .. "/cert.pem", key = dir .. "/key.pem" }
  local res = proc.run({ "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
    "-keyout", tls.key, "-out", tls.cert, "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=DNS:localhost" })
  assert(res.code == 0, res.stderr)
  return tls
end

-- start(dir, opts) -> {port =, pid =, signal = fn, stop = fn}. opts.args are
-- redis-server options; opts.tls (self_signed's) makes it serve TLS only.
function _M.start(dir, opts)
  local port = support_server.free_port()
  local argv = { "redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--daemonize", "yes", "--dir", dir, "--pidfile", dir .. "/redis.pid",
    "--logfile", dir .. "/redis.log" }
  if opts.tls then
    for _, a in ipairs({ "--port", "0", "--tls-port", port, "--tls-cert-file", opts.tls.cert,
      "--tls-key-file", opts.tls.key, "--tls-ca-cert-file", opts.tls.cert,
      "--tls-auth-clients", "no" }) do argv[#argv + 1] = tostring(a) end
  else
    argv[#argv + 1], argv[#argv + 2] = "--port", tostring(port)
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local r = proc.run(argv)
  assert(r.code == 0, r.stderr .. r.stdout)
  local pid = proc.wait_for(function()
    local f = io.open(dir .. "/redis.pid")
    local n = f and f:read("n")
    if f then f:close() end
    return n and support_server.accepting(port) and n
  end, 5, "redis-server to start")
  return {
    port = port,
    pid = pid,
    signal = function(sig) os.execute("kill -" .. sig .. " " .. pid) end,
    stop = function()
      os.execute("kill -CONT " .. pid .. " 2>/dev/null; kill " .. pid .. " 2>/dev/null")
      proc.wait_for(function() return not os.execute("kill -0 " .. pid .. " 2>/dev/null") end, 5)
    end,
  }
end

return _M
