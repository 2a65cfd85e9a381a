-- wrk: joins the waiting room as fast as it can, every request a FRESH user proven by a
-- signed id token (the app in BOXOFFICE_IDENTITY_MODE=jwt verifies each one).
--
--   wrk -t2 -c64 -d20s --latency -s k6/wrk-join-jwt.lua http://127.0.0.1:18090 -- <concertId> <tokens file> <threads>
--
-- The tokens file holds one pre-minted token per line, each for a different user
-- (`tools/issuer mint DIR --count N`: minting is not what is measured). Thread t of
-- <threads> sends lines t, t + threads, ...; after the last one it starts over, and
-- those joins are no longer fresh, which bench-ceilings catches: it checks that the
-- concert's ticket counter in Redis equals the number of requests wrk completed. No
-- response() hook, as in wrk-join.lua.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  concert = args[1] or "1"
  local file = assert(args[2], "usage: -- <concertId> <tokens file> <threads>")
  local stride = tonumber(args[3] or "1")
  bodies = {}
  local i = 0
  for line in io.lines(file) do
    if (i % stride) == (tid - 1) and #line > 0 then
      bodies[#bodies + 1] = '{"concertId":' .. concert .. ',"idToken":"' .. line .. '"}'
    end
    i = i + 1
  end
  assert(#bodies > 0, "no tokens for thread " .. tid .. " in " .. file)
  next_body = 1
  path = "/v1/queue/tokens"
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  local body = bodies[next_body]
  next_body = next_body + 1
  if next_body > #bodies then next_body = 1 end
  return wrk.format("POST", path, headers, body)
end
