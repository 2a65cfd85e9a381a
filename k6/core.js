// k6 benchmark of the booking core at think-time loads. One scenario per run:
//
//   k6 run -e SCENARIO=stress|reservation|payment|lookup [-e BASE_URL=...] [-e DURATION=75s] k6/core.js
//
// Normally started by k6/bench-core, which also starts the app under a CPU budget.
// Each run seeds its own concert through the admin API in setup().
//
// Every call is tagged `name:<call>` and timed into a Trend `call_<call>` (ms), so the
// summary export carries count/P50/P95/P99 per call; `fail_<call>` counts its real
// failures (5xx, unexpected statuses, bad bodies) and `errors` is their overall rate.

import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const SCENARIO = __ENV.SCENARIO || 'reservation';
const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:18080').replace(/\/$/, '');
const ADMIN_KEY = __ENV.ADMIN_API_KEY || 'bench-admin';
const DURATION = __ENV.DURATION || '75s';
// Distinguishes users and keys of separate runs against the same database.
const RUN = __ENV.RUN_ID || `${Date.now().toString(36)}`;

const PLANS = {
  reservation: { vus: 50, seats: 50 },
  stress: { vus: 50, seats: 50 },
  payment: { vus: 20, seats: 20000 },
  lookup: { vus: 50, seats: 50 },
};
const plan = PLANS[SCENARIO];
if (!plan) {
  throw new Error(`unknown SCENARIO=${SCENARIO}; use one of ${Object.keys(PLANS).join(', ')}`);
}
const VUS = Number(__ENV.VUS || plan.vus);
const PRICE = 1000;
// Payment: each VU owns seats [(vu-1)*SEATS_PER_VU+1, vu*SEATS_PER_VU], so no two VUs meet.
const SEATS_PER_VU = Math.floor(plan.seats / VUS);

export const options = {
  scenarios: {
    [SCENARIO]: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: '15s',
      exec: SCENARIO,
    },
  },
  thresholds: {
    errors: ['rate<0.01'],
  },
  summaryTrendStats: ['count', 'avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  setupTimeout: '60s',
  noConnectionReuse: false,
};

// 409 (SEAT_TAKEN) is an expected answer in a rush: not an http_req_failed.
http.setResponseCallback(http.expectedStatuses(200, 201, 409));

const errors = new Rate('errors');
const trends = {};
const fails = {};
const CALLS = ['join', 'charge', 'hold', 'hold_201', 'hold_409', 'release', 'pay', 'seats'];
for (const c of CALLS) {
  trends[c] = new Trend(`call_${c}`, true);
  fails[c] = new Counter(`fail_${c}`);
}

function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

// Records one call: its time, whether it was a real failure, and a check on its body.
// `ok(res, body)` says whether the answer is one we expect; anything else is a failure.
function record(call, res, ok) {
  const body = json(res);
  trends[call].add(res.timings.duration);
  const good = res.status !== 0 && res.status < 500 && ok(res, body);
  errors.add(!good, { name: call });
  if (!good) {
    fails[call].add(1);
    const code = body && body.code ? body.code : '';
    console.warn(`${call}: unexpected ${res.status} ${code} ${String(res.body || res.error).slice(0, 200)}`);
  }
  check(res, { [`${call}: expected answer`]: () => good });
  return body;
}

function params(call, token, extraHeaders) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  return { headers: Object.assign(headers, extraHeaders || {}), tags: { name: call } };
}

function thinkTime() {
  sleep(0.5 + Math.random()); // 0.5-1.5 s
}

let keySeq = 0;
function idemKey(kind) {
  keySeq += 1;
  return `${RUN}-${kind}-${exec.vu.idInTest}-${keySeq}`;
}

function userId(kind) {
  return `b${RUN}-${kind}-${exec.vu.idInTest}`;
}

// Joins the waiting room and waits (polling, as a client without a socket would)
// until the admission tick lets the token in. Returns the ACTIVE token or null.
function join(concertId, user) {
  const res = http.post(`${BASE}/v1/queue/tokens`, JSON.stringify({ concertId, userId: user }), params('join'));
  const body = record('join', res, (r, b) =>
    (r.status === 201 || r.status === 200) && b && /^[0-9]+\.[0-9a-f]{64}$/.test(b.token)
      && (b.state === 'ACTIVE' || (b.state === 'WAITING' && b.position >= 1)));
  if (!body || !body.token) return null;
  let state = body.state;
  for (let i = 0; state === 'WAITING' && i < 200; i++) {
    sleep(0.05);
    const poll = http.get(`${BASE}/v1/queue/tokens/current`, params('queue_status', body.token));
    state = poll.status === 200 ? poll.json('state') : null;
  }
  return state === 'ACTIVE' ? body.token : null;
}

function hold(token, scheduleId, seatNo, { takenIsExpected }) {
  const res = http.post(`${BASE}/v1/reservations`, JSON.stringify({ scheduleId, seatNo }), params('hold', token));
  const body = record('hold', res, (r, b) => {
    if (r.status === 201) return b && b.status === 'HELD' && b.seatNo === seatNo && b.price === PRICE;
    if (r.status === 409) return takenIsExpected && b && b.code === 'SEAT_TAKEN';
    return false;
  });
  if (res.status === 201) trends.hold_201.add(res.timings.duration);
  if (res.status === 409) trends.hold_409.add(res.timings.duration);
  return { res, body };
}

// ---------------------------------------------------------------- setup

export function setup() {
  const ready = http.get(`${BASE}/health/ready`, { tags: { name: 'setup' } });
  if (ready.status !== 200) fail(`app not ready: ${ready.status} ${ready.body}`);
  const res = http.post(
    `${BASE}/v1/admin/concerts`,
    JSON.stringify({
      title: `bench ${SCENARIO} ${RUN}`,
      artist: 'k6',
      schedules: [{ venue: 'Hall', startsAt: '2027-01-01T19:00:00Z', seatCount: plan.seats, price: PRICE }],
    }),
    { headers: { 'Content-Type': 'application/json', 'X-Api-Key': ADMIN_KEY }, tags: { name: 'setup' } },
  );
  if (res.status !== 201) fail(`seeding failed: ${res.status} ${res.body}`);
  const body = res.json();
  console.log(`seeded concert ${body.concertId} schedule ${body.scheduleIds[0]} (${plan.seats} seats) for ${SCENARIO}, ${VUS} VUs, ${DURATION}`);
  return { concertId: body.concertId, scheduleId: body.scheduleIds[0] };
}

// ---------------------------------------------------------------- scenarios

// Per-VU state (each VU has its own copy of this module).
let token = null;
let charged = false;
let nextSeat = 0;

// 1. Everyone contends for the seats of one 50-seat schedule. A winner keeps its seat
//    for a short pause and releases it, so seats churn and the contest stays alive.
export function reservation(data) {
  contend(data, true);
}

// 1b. The report's own Reservation Stress: winners keep their seats, so once the 50
//     are gone every attempt is an (expected) 409 SEAT_TAKEN.
export function stress(data) {
  contend(data, false);
}

function contend(data, releaseWins) {
  if (!token) token = join(data.concertId, userId('r'));
  if (!token) return thinkTime();
  const seatNo = 1 + Math.floor(Math.random() * plan.seats);
  const { res, body } = hold(token, data.scheduleId, seatNo, { takenIsExpected: true });
  if (res.status === 401) token = null; // lapsed token: join again next time
  if (releaseWins && res.status === 201 && body) {
    sleep(0.2 + Math.random() * 0.6); // the short pause a winner keeps its seat
    const rel = http.del(`${BASE}/v1/reservations/${body.id}`, null, params('release', token));
    record('release', rel, (r, b) => r.status === 200 && b && b.status === 'RELEASED');
  }
  thinkTime();
}

// 2. Join, hold a fresh seat of the VU's own range, pay it once. Paying ends the token,
//    so every iteration joins anew. Points are charged once per VU.
export function payment(data) {
  token = join(data.concertId, userId('p'));
  if (!token) return thinkTime();
  if (!charged) {
    const res = http.post(`${BASE}/v1/points/charges`, JSON.stringify({ amount: 10000000 }),
      params('charge', token, { 'Idempotency-Key': idemKey('charge') }));
    record('charge', res, (r) => r.status === 201);
    charged = res.status === 201;
    if (!charged) return thinkTime();
  }
  if (nextSeat >= SEATS_PER_VU) {
    console.warn(`VU ${exec.vu.idInTest} used up its ${SEATS_PER_VU} seats`);
    return thinkTime();
  }
  const seatNo = (exec.vu.idInTest - 1) * SEATS_PER_VU + 1 + nextSeat;
  nextSeat += 1;
  const { res, body } = hold(token, data.scheduleId, seatNo, { takenIsExpected: false });
  if (res.status === 201 && body) {
    const pay = http.post(`${BASE}/v1/payments`, JSON.stringify({ reservationId: body.id }),
      params('pay', token, { 'Idempotency-Key': idemKey('pay') }));
    record('pay', pay, (r, b) =>
      r.status === 201 && b && b.reservationId === body.id && b.amount === PRICE);
  }
  thinkTime();
}

// 3. Read the cached seat map of a 50-seat schedule.
export function lookup(data) {
  const res = http.get(`${BASE}/v1/schedules/${data.scheduleId}/seats`, { tags: { name: 'seats' } });
  record('seats', res, (r, b) =>
    r.status === 200 && b && b.scheduleId === data.scheduleId && Array.isArray(b.seats) && b.seats.length === plan.seats);
  thinkTime();
}

export function teardown(data) {
  console.log(`done: concert ${data.concertId} schedule ${data.scheduleId}`);
}
