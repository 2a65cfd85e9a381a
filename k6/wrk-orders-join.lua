-- wrk: the fans of an orders benchmark join the waiting room, each once, and their
-- tokens are kept (k6/bench-orders' preparation, not a measurement).
--
--   wrk -t2 -c64 -d120s -s k6/wrk-orders-join.lua http://127.0.0.1:18096 -- \
--       <concertId> <user prefix> <fans per thread> <out file prefix>
--
-- Thread t joins the fans "<prefix>-<t>-<n>" for n = 1..<fans per thread> (an app in
-- development identity mode takes the userId as sent) and writes "<userId> <token>"
-- per answer to "<out file prefix>.<t>". Once it has sent its fans it sends
-- GET /health/live until every join has answered, then closes the file, writes
-- "<out file prefix>.<t>.done" and stops: no token is lost in flight. (wrk itself runs
-- out its -d: k6/bench-orders stops it with SIGINT once every thread is done.) A join that is not answered 200 or 201 with a token is counted and its
-- first answers are printed; k6/bench-orders checks that every fan got a token.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  concert = assert(args[1], "usage: -- <concertId> <user prefix> <fans per thread> <out file prefix>")
  prefix = args[2] .. "-" .. tid .. "-"
  quota = tonumber(args[3])
  file = args[4] .. "." .. tid
  out = assert(io.open(file, "w"))
  sent, answered, failed = 0, 0, 0
  verify_call = tid == 1
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  if verify_call then -- wrk calls the first thread's request() once before it starts, and never sends it
    verify_call = false
    return wrk.format("GET", "/health/live")
  end
  if sent >= quota then
    return wrk.format("GET", "/health/live")
  end
  sent = sent + 1
  return wrk.format("POST", "/v1/queue/tokens", headers,
    '{"concertId":' .. concert .. ',"userId":"' .. prefix .. sent .. '"}')
end

function response(status, headers, body)
  if not out then return end -- done: the thread is stopping
  local user, token = body:match('"userId":"([^"]+)"'), body:match('"token":"([^"]+)"')
  if user and token and (status == 200 or status == 201) then
    out:write(user, " ", token, "\n")
    answered = answered + 1
  elseif not (status == 200 and body:find('"status"', 1, true)) then -- not /health/live's answer
    failed = failed + 1
    answered = answered + 1
    if failed <= 3 then io.stderr:write("join: ", status, " ", body:sub(1, 200), "\n") end
  end
  if answered >= quota and out then
    out:close()
    out = nil
    assert(io.open(file .. ".done", "w")):close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local a, f = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("answered")
    f = f + t:get("failed")
  end
  io.write(string.format("orders-join answered=%d failed=%d\n", a, f))
end
