-- wrk: joins the waiting room as fast as it can, every request a FRESH user from a
-- DISTINCT client address, named in X-Forwarded-For (as a load balancer would).
--
--   wrk -t2 -c64 -d20s --latency -s k6/wrk-join-xff.lua http://127.0.0.1:18090 -- <concertId> [runId] [one]
--
-- userId = "x<runId>-<thread>-<counter>" as in k6/wrk-join.lua. X-Forwarded-For =
-- "<10 + thread>.<counter as three bytes>": a new address for every request of the
-- run (2^24 per thread), so with the app's BOXOFFICE_TRUSTED_PROXIES=127.0.0.1 each
-- join is one client's first and the per-client limit never refuses one; it is the
-- limiter's cost that shows. With a third argument `one`, every request names the
-- same address 192.0.2.1 (one hot key in the limiter; give the app a limit it
-- never reaches). k6/bench-sale runs it; no response() hook (wrk's Non-2xx line
-- counts refusals).

local counter = 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  concert = args[1] or "1"
  run = args[2] or tostring(os.time())
  one = args[3] == "one"
  prefix = '{"concertId":' .. concert .. ',"userId":"x' .. run .. '-' .. tid .. '-'
  path = "/v1/queue/tokens"
  first = 10 + tid
  headers = { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = "192.0.2.1" }
end

function request()
  local body = prefix .. counter .. '"}'
  if not one then
    local c = counter % 16777216
    headers["X-Forwarded-For"] = first .. "." .. math.floor(c / 65536) .. "." .. (math.floor(c / 256) % 256) .. "." .. (c % 256)
  end
  counter = counter + 1
  return wrk.format("POST", path, headers, body)
end
