// k6: the report's Queue Spike profile against the waiting room's join call.
//
//   k6 run [-e BASE_URL=http://127.0.0.1:18090] [-e ADMIN_API_KEY=bench-admin]
//          [-e CONCERT_ID=N] [-e RUN_ID=...] k6/queue.js
//
// Normally started by `k6/bench-queue --only spike`, which holds the app to a CPU budget.
// ramping-vus: 10 s -> 20 VUs, 20 s -> 100 VUs, 30 s at 100, 10 s -> 0. Each iteration
// joins the queue with a FRESH userId (unique per run + VU + iteration), checks the
// answer carries `token` and `position`, then thinks for 1 s.
//
// The join is tagged `name:join` and timed into the Trend `call_join` (ms), so the
// summary export carries its count/P50/P95/P99; `errors` is the rate of joins that
// were not a 201 with a WAITING token and a position.

import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';

const BASE = (__ENV.BASE_URL || 'http://127.0.0.1:18090').replace(/\/$/, '');
const ADMIN_KEY = __ENV.ADMIN_API_KEY || 'bench-admin';
const RUN = __ENV.RUN_ID || Date.now().toString(36);

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: '10s', target: 20 },
        { duration: '20s', target: 100 },
        { duration: '30s', target: 100 },
        { duration: '10s', target: 0 },
      ],
      gracefulRampDown: '5s',
      exec: 'spike',
    },
  },
  thresholds: {
    errors: ['rate<0.01'],
    // The target. A miss makes k6 exit 99; bench-queue reports it, it does not abort.
    call_join: ['p(95)<1'],
  },
  summaryTrendStats: ['count', 'avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  setupTimeout: '30s',
};

const callJoin = new Trend('call_join', true);
const failJoin = new Counter('fail_join');
const errors = new Rate('errors');

export function setup() {
  if (__ENV.CONCERT_ID) {
    return { concertId: Number(__ENV.CONCERT_ID) };
  }
  const res = http.post(
    `${BASE}/v1/admin/concerts`,
    JSON.stringify({
      title: 'Queue spike',
      artist: 'k6',
      schedules: [{ venue: 'Hall', startsAt: '2027-01-01T19:00:00Z', seatCount: 50, price: 1000 }],
    }),
    { headers: { 'Content-Type': 'application/json', 'X-Api-Key': ADMIN_KEY }, tags: { name: 'setup' } },
  );
  if (res.status !== 201) {
    fail(`creating the concert: ${res.status} ${res.body}`);
  }
  return { concertId: res.json('concertId') };
}

const PARAMS = { headers: { 'Content-Type': 'application/json' }, tags: { name: 'join' } };

export function spike(data) {
  const userId = `s${RUN}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const res = http.post(
    `${BASE}/v1/queue/tokens`,
    JSON.stringify({ concertId: data.concertId, userId }),
    PARAMS,
  );
  callJoin.add(res.timings.duration);
  let body = null;
  try {
    body = res.json();
  } catch (_) {
    body = null;
  }
  const ok = check(res, {
    'join 201': (r) => r.status === 201,
    'join has token': () => body !== null && typeof body.token === 'string' && body.token.length > 0,
    'join has position': () => body !== null && Number.isInteger(body.position) && body.position >= 1,
  });
  errors.add(!ok);
  if (!ok) {
    failJoin.add(1);
  }
  sleep(1);
}
