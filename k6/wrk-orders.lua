-- wrk: fans hold and pay as fast as they can, each fan one hold (a fresh order of
-- <size> seats, or a v1 single-seat reservation) paid as soon as its answer arrives.
--
--   wrk -t2 -c32 -d20s --latency -s k6/wrk-orders.lua http://127.0.0.1:18096 -- \
--       <order|v1> <size> <tokens file> <threads> <scheduleIds,...> <seats per schedule>
--
-- order: POST /v1/orders {"scheduleId", "seats": [n..n+size-1]}, then
--        POST /v1/orders/{id}/payment.
-- v1:    POST /v1/reservations {"scheduleId", "seatNo"}, then POST /v1/payments
--        {"reservationId"} (size must be 1).
-- The tokens file has "<userId> <token>" lines of ACTIVE tokens whose fans have the
-- points (k6/bench-orders joins and funds them first); thread t of <threads> takes
-- lines t, t + threads, ... and holds on the t-th schedule, seats 1, 1 + size, ...,
-- so no seat is asked for twice and every hold should be a 201. Each payment carries
-- a fresh Idempotency-Key. A thread sends the payment of every hold answered before
-- its next hold, from whichever of its connections is free first: an order is paid
-- about one round trip after it is held, as a client would. Responses are parsed
-- (the order's id and first seat, to know whose token pays it), which costs wrk
-- some CPU. A thread that runs out of fans or seats stops and says so (`exhausted`):
-- the run then measured less than its duration and k6/bench-orders fails it.
-- done() prints "orders-bench holds=... pays=... refused=... exhausted=... unmatched=...".

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  size = tonumber(args[2])
  assert(mode == "order" or (mode == "v1" and size == 1), "usage: -- <order|v1> <size> <tokens> <threads> <schedules> <seats>")
  local stride = tonumber(args[4])
  tokens = {}
  local i = 0
  for line in io.lines(args[3]) do
    local token = line:match("^%S+%s+(%S+)$")
    if token and (i % stride) == (tid - 1) then tokens[#tokens + 1] = token end
    i = i + 1
  end
  local schedules = {}
  for id in args[5]:gmatch("%d+") do schedules[#schedules + 1] = id end
  schedule = assert(schedules[tid], "no schedule for thread " .. tid)
  seats = tonumber(args[6])
  next_token, next_seat = 1, 1
  owners = {} -- first seat -> token, while the hold is in flight
  pending = {} -- held, to pay: { id, token }
  holds, pays, refused, exhausted, unmatched = 0, 0, 0, 0, 0
  verify_call = tid == 1
end

local function auth(token, key)
  local h = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  if key then h["Idempotency-Key"] = key end
  return h
end

function request()
  if verify_call then -- wrk calls the first thread's request() once before it starts, and never sends it
    verify_call = false
    return wrk.format("GET", "/health/live")
  end
  local p = table.remove(pending)
  if p then
    if mode == "v1" then
      return wrk.format("POST", "/v1/payments", auth(p.token, "bench-" .. p.id), '{"reservationId":' .. p.id .. '}')
    end
    return wrk.format("POST", "/v1/orders/" .. p.id .. "/payment", auth(p.token, "bench-" .. p.id), "{}")
  end
  if next_token > #tokens or next_seat + size - 1 > seats then
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/health/live")
  end
  local token = tokens[next_token]
  next_token = next_token + 1
  local first = next_seat
  next_seat = next_seat + size
  owners[first] = token
  if mode == "v1" then
    return wrk.format("POST", "/v1/reservations", auth(token),
      '{"scheduleId":' .. schedule .. ',"seatNo":' .. first .. '}')
  end
  local list = {}
  for n = first, first + size - 1 do list[#list + 1] = n end
  return wrk.format("POST", "/v1/orders", auth(token),
    '{"scheduleId":' .. schedule .. ',"seats":[' .. table.concat(list, ",") .. ']}')
end

function response(status, headers, body)
  if status ~= 201 then
    refused = refused + 1
    if refused <= 3 then io.stderr:write("orders-bench: ", status, " ", body:sub(1, 200), "\n") end
    return
  end
  if body:find('"paidAt"', 1, true) then
    pays = pays + 1
    return
  end
  -- a hold: its id is the body's only "id" key; its first seat names its fan
  local id = body:match('"id":(%d+)')
  local first = tonumber(body:match('"seatNo":(%d+)'))
  local token = first and owners[first]
  if id and token then
    owners[first] = nil
    holds = holds + 1
    pending[#pending + 1] = { id = id, token = token }
  else
    unmatched = unmatched + 1
  end
end

function done(summary, latency, requests)
  local t = { holds = 0, pays = 0, refused = 0, exhausted = 0, unmatched = 0 }
  for _, thread in ipairs(threads) do
    for k in pairs(t) do t[k] = t[k] + thread:get(k) end
  end
  io.write(string.format("orders-bench holds=%d pays=%d refused=%d exhausted=%d unmatched=%d duration_us=%d\n",
    t.holds, t.pays, t.refused, t.exhausted, t.unmatched, summary.duration))
end
