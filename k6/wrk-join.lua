-- wrk: joins the waiting room as fast as it can, every request a FRESH user.
--
--   wrk -t2 -c64 -d20s --latency -s k6/wrk-join.lua http://127.0.0.1:18090 -- <concertId> [runId]
--
-- userId = "w<runId>-<thread>-<counter>", unique per run, thread and request, so every
-- answer should be a 201 (a new place in line); wrk's own "Non-2xx or 3xx responses"
-- line counts anything else. No response() hook: it would make wrk parse each body in
-- Lua and cost load-generator CPU. bench-ceilings checks instead that the concert's
-- ticket counter in Redis equals the number of requests wrk completed.

local counter = 1
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  concert = args[1] or "1"
  run = args[2] or tostring(os.time())
  prefix = '{"concertId":' .. concert .. ',"userId":"w' .. run .. '-' .. tid .. '-'
  path = "/v1/queue/tokens"
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  local body = prefix .. counter .. '"}'
  counter = counter + 1
  return wrk.format("POST", path, headers, body)
end
