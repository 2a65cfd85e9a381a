// Scenario 6, the opening of a sale: fans pre-queue during the run-up to a scheduled
// opening, the sale opens under load while more fans keep arriving, and every fan
// waits on its socket until it is let in, then leaves to free its place. What is
// measured is fairness, not speed: the runner (k6/run, k6/lib/fairness.py) reads every
// fan's record from k6's log after the run and fails it if anyone was let in before
// the opening, a fan who joined after the opening got ahead of a pre-queued one, a
// fan was admitted twice or lost, or the pre-queue was let in in arrival order.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=report|smoke] k6/scenarios/sale-opening.js 2> k6.log
//   python3 k6/lib/fairness.py k6.log --metrics http://127.0.0.1:8080
//
// setup() creates a concert with `sale: {opensAt: now + OPENS_IN, admissionRate,
// activeCapacity}` (opensAt on a whole second). PRE_FANS fans then arrive at random
// times over the run-up (each joins, gets 201 WAITING with no position and
// `opensAt`, opens /v1/queue/ws?token= and hears `prequeue`), and POST_FANS more
// arrive over the POST_SPREAD seconds after the opening (201 with a position).
// Whether a fan is pre-queued is what the join answered, not when k6 meant it to
// arrive: a fan aimed at the last milliseconds before the opening may land after it.
// Each fan reads its socket until `admitted` (and polls GET /v1/queue/tokens/current
// if its socket breaks), then leaves (DELETE /v1/queue/tokens/current). One VU plays
// FANS_PER_VU fans at once (async requests and sockets on its event loop), so
// thousands of fans cost k6 a hundred VUs.
//
// Each fan logs one line `sale-fan {json}`: when it sent its join and had the answer
// (ms, this machine's clock), whether it was pre-queued, its first place after the
// opening, when its socket heard `admitted` and the `activeUntil` it carried (the
// admission tick's Redis time + the token's active time, identical for one tick's
// batch: the admission order). setup() logs `sale-setup {json}` (concert, opensAt,
// settings) and teardown() `sale-report {json}` (the operator's sale report).
//
// Environment (all optional; defaults per profile below): OPENS_IN (s), PRE_FANS,
// POST_FANS, POST_SPREAD (s), ADMISSION_RATE (/s), ACTIVE_CAPACITY, FANS_PER_VU (20),
// ADMISSION_TIMEOUT (s after the opening, or after the join for later fans: 240),
// POLL_MS (250, the fallback's polling period).

import http from 'k6/http';
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import * as k6 from '../lib/common.js';
import * as identity from '../lib/identity.js';

// The pre-queue is large enough for the Spearman check: for a uniform shuffle |rho|
// has a standard deviation of 1/sqrt(n - 1), so |rho| < 0.1 fails by chance about once
// in 600 runs at 1,000 pre-queued fans (and once in 9 at 250).
// A tick admits up to min(free places, the rate's allowance) at once: a capacity of
// one tick's worth of the rate (ticks every 100 ms) spreads admissions over the ticks
// instead of letting a hundred fans in, and out again, at the same instant.
const PROFILES = {
  report: { opensIn: 60, pre: 2000, post: 500, postSpread: 20, rate: 100, capacity: 10 },
  smoke: { opensIn: 20, pre: 1000, post: 200, postSpread: 5, rate: 200, capacity: 20 },
};
if (!PROFILES[k6.PROFILE]) {
  throw new Error(`the sale opening runs the report and smoke profiles (and env overrides), not ${k6.PROFILE}`);
}
const P = PROFILES[k6.PROFILE];
const num = (name, fallback) => Number(__ENV[name] || fallback);
const OPENS_IN = num('OPENS_IN', P.opensIn);
const PRE_FANS = num('PRE_FANS', P.pre);
const POST_FANS = num('POST_FANS', P.post);
const POST_SPREAD = num('POST_SPREAD', P.postSpread);
const ADMISSION_RATE = num('ADMISSION_RATE', P.rate);
const ACTIVE_CAPACITY = num('ACTIVE_CAPACITY', P.capacity);
const FANS_PER_VU = num('FANS_PER_VU', 20);
const ADMISSION_TIMEOUT = num('ADMISSION_TIMEOUT', 240);
const POLL_MS = num('POLL_MS', 250);
const FANS = PRE_FANS + POST_FANS;
const VUS = Math.ceil(FANS / FANS_PER_VU);
const PRICE = 1000;
const TOKEN = /^[0-9]+\.[0-9a-f]{64}$/;

export const options = k6.options('sale_opening', {
  executor: 'per-vu-iterations',
  vus: VUS,
  iterations: 1,
  maxDuration: `${OPENS_IN + POST_SPREAD + ADMISSION_TIMEOUT + 60}s`,
  exec: 'fans',
}, ['join', 'leave']);

const positionsHeard = new Counter('ws_positions');
const fallbacks = new Counter('sale_socket_fallbacks');
// Pre-queued fans whose socket was open at the opening: from opensAt until the socket
// brought news (a place in line, or `admitted`). The contract: within a second.
const news = new Trend('sale_news_after_opening', true);
// `leave` is this scenario's own call (lib/common.js times the others).
const leaveTrend = new Trend('call_leave', true);
const leaveFailures = new Counter('fail_leave');

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

export function setup() {
  k6.waitReady();
  // A whole second, so that a server keeping seconds only opens no earlier than k6 thinks.
  const opensAtMs = Math.ceil((Date.now() + OPENS_IN * 1000) / 1000) * 1000;
  const admin = { headers: { 'Content-Type': 'application/json', 'X-Api-Key': k6.ADMIN_KEY }, tags: { name: 'setup' } };
  const res = http.post(`${k6.BASE}/v1/admin/concerts`, JSON.stringify({
    title: `Sale Opening (k6 ${k6.RUN})`,
    artist: 'k6',
    schedules: [{ venue: 'Hall 1', startsAt: '2027-01-01T19:00:00Z', seatCount: 10, price: PRICE }],
    sale: { opensAt: new Date(opensAtMs).toISOString(), admissionRate: ADMISSION_RATE, activeCapacity: ACTIVE_CAPACITY },
  }), admin);
  if (res.status !== 201) fail(`creating the concert with a scheduled sale: ${res.status} ${res.body}`);
  const concertId = res.json('concertId');
  const sale = http.get(`${k6.BASE}/v1/admin/concerts/${concertId}/sale`, admin);
  const report = k6.json(sale);
  if (sale.status !== 200 || !report || report.state !== 'SCHEDULED' || Date.parse(report.opensAt) !== opensAtMs) {
    fail(`the sale is not SCHEDULED to open at ${new Date(opensAtMs).toISOString()}: ${sale.status} ${sale.body}`);
  }
  const data = {
    concertId,
    scheduleIds: res.json('scheduleIds'),
    opensAt: report.opensAt,
    opensAtMs,
    startMs: Date.now(),
    fans: FANS,
    preFans: PRE_FANS,
    postFans: POST_FANS,
    postSpread: POST_SPREAD,
    admissionRate: report.admissionRate,
    activeCapacity: report.activeCapacity,
    vus: VUS,
  };
  console.log(`sale-setup ${JSON.stringify(data)}`);
  return data;
}

/** Whether a join or status answer is the pre-queue's: WAITING, no place, the sale's opensAt. */
function prequeuedAnswer(body, data) {
  return Boolean(body) && body.state === 'WAITING' && (body.position === undefined || body.position === null)
    && typeof body.opensAt === 'string' && Date.parse(body.opensAt) === data.opensAtMs;
}

function notePosition(rec, position, at) {
  if (!Number.isInteger(position)) return;
  if (rec.firstPosition === null) {
    rec.firstPosition = position;
    rec.firstPositionAt = at;
  }
  rec.maxPosition = Math.max(rec.maxPosition || 0, position);
  rec.positions += 1;
}

function noteAdmitted(rec, activeUntil, at, via) {
  rec.admittedMessages += 1;
  if (rec.admittedAt !== null) return;
  rec.admittedAt = at;
  rec.via = via;
  const until = Date.parse(activeUntil);
  rec.activeUntil = Number.isNaN(until) ? null : until;
}

/**
 * The socket until `admitted`: resolves 'admitted', a terminal message's type, 'timeout',
 * or a transport failure. After `admitted` the socket stays open (a second `admitted`
 * would count) until the fan has left: `conn.close()`.
 */
function follow(token, rec, data, deadline, conn) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${k6.WS_BASE}/v1/queue/ws?token=${encodeURIComponent(token)}`);
    let settled = false;
    let timer = null;
    conn.close = () => ws.close();
    const settle = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (outcome !== 'admitted') ws.close();
      resolve(outcome);
    };
    timer = setTimeout(() => settle('timeout'), Math.max(0, deadline - Date.now()));
    ws.onopen = () => {
      rec.socketOpenedAt = Date.now();
    };
    ws.onmessage = (event) => {
      const at = Date.now();
      let message = null;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        settle(`transport: unreadable message ${String(event.data).slice(0, 100)}`);
        return;
      }
      if (rec.firstMessage === null) rec.firstMessage = message.type;
      switch (message.type) {
        case 'prequeue':
          rec.prequeueHeard += 1;
          if (Date.parse(message.opensAt) !== data.opensAtMs) rec.wrongOpensAt = String(message.opensAt);
          break;
        case 'position':
          positionsHeard.add(1);
          notePosition(rec, message.position, at);
          break;
        case 'admitted':
          noteAdmitted(rec, message.activeUntil, at, 'socket');
          settle('admitted');
          break;
        case 'closed':
        case 'soldOut':
        case 'expired':
          settle(message.type);
          break;
        default:
          rec.unknownMessages += 1;
      }
    };
    ws.onclose = (event) => settle(`transport: socket closed (${event.code}) before admission`);
    ws.onerror = (event) => settle(`transport: socket error ${event.error}`);
  });
}

/** The fallback without a socket: polls the token's status until ACTIVE. */
async function poll(token, rec, data, deadline) {
  fallbacks.add(1);
  rec.polled = true;
  while (Date.now() < deadline) {
    const res = await http.asyncRequest('GET', `${k6.BASE}/v1/queue/tokens/current`, null,
      k6.params('queue_status', token));
    const body = k6.record('queue_status', res, (r, b) => r.status === 200 && b
      && (b.state !== 'WAITING' || Number.isInteger(b.position) || prequeuedAnswer(b, data)));
    const at = Date.now();
    if (body && body.state === 'ACTIVE') {
      noteAdmitted(rec, body.activeUntil, at, 'poll');
      return 'admitted';
    }
    if (body && body.state === 'EXPIRED') return `expired (saleState ${body.saleState})`;
    if (body) notePosition(rec, body.position, at);
    await delay(POLL_MS);
  }
  return 'timeout';
}

async function leave(token, rec) {
  const params = Object.assign(k6.params('leave', token), { responseCallback: http.expectedStatuses(204) });
  const res = await http.asyncRequest('DELETE', `${k6.BASE}/v1/queue/tokens/current`, null, params);
  leaveTrend.add(res.timings.duration);
  rec.leftStatus = res.status;
  const good = res.status === 204;
  k6.errors.add(!good, { call: 'leave' });
  check(res, { 'leave: expected answer': () => good });
  if (!good) {
    leaveFailures.add(1);
    console.warn(`leave: unexpected ${res.status} ${String(res.body || res.error).slice(0, 200)}`);
  }
}

/** One fan's record: what the fairness check reads (k6/lib/fairness.py). */
function newRecord(i) {
  return {
    fan: i, user: `k6-${k6.RUN}-sale-${i}`, planned: i < PRE_FANS ? 'pre' : 'post', joinSentAt: null,
    joinedAt: null, joinStatus: null, prequeued: false, joinPosition: null, tokenTail: null, socketOpenedAt: null,
    firstMessage: null, prequeueHeard: 0, wrongOpensAt: null, firstPosition: null, firstPositionAt: null,
    maxPosition: null, positions: 0, unknownMessages: 0, admittedAt: null, activeUntil: null, admittedMessages: 0,
    via: null, polled: false, outcome: null, leftStatus: null,
  };
}

async function fan(data, rec) {
  const i = rec.fan;
  const user = rec.user;
  // Pre-queue arrivals over the run-up, the rest over POST_SPREAD after the opening.
  const arrival = rec.planned === 'pre'
    ? data.startMs + Math.random() * (data.opensAtMs - data.startMs)
    : data.opensAtMs + Math.random() * POST_SPREAD * 1000;
  await delay(arrival - Date.now());
  const body = Object.assign({ concertId: data.concertId }, await identity.credentials(user));
  rec.joinSentAt = Date.now();
  const res = await http.asyncRequest('POST', `${k6.BASE}/v1/queue/tokens`, JSON.stringify(body), k6.params('join'));
  rec.joinedAt = Date.now();
  rec.joinStatus = res.status;
  const answeredBeforeOpensAt = rec.joinedAt < data.opensAtMs;
  const ticket = k6.record('join', res, (r, b) => r.status === 201 && b && TOKEN.test(b.token) && b.userId === user
    // Answered before opensAt: pre-queued, or the sale opened early. After: either (the
    // opening is the first tick at or after opensAt).
    && (prequeuedAnswer(b, data)
      || (!answeredBeforeOpensAt && b.state === 'WAITING' && Number.isInteger(b.position) && b.position >= 1)
      || (!answeredBeforeOpensAt && b.state === 'ACTIVE')));
  if (!ticket || !TOKEN.test(ticket.token || '')) {
    rec.outcome = 'join failed';
    return;
  }
  const token = ticket.token;
  rec.tokenTail = token.slice(-16);
  rec.prequeued = prequeuedAnswer(ticket, data);
  if (Number.isInteger(ticket.position)) {
    rec.joinPosition = ticket.position;
    notePosition(rec, ticket.position, rec.joinedAt);
  }
  if (ticket.state === 'ACTIVE') noteAdmitted(rec, ticket.activeUntil, rec.joinedAt, 'join');

  const deadline = Math.max(rec.joinedAt, data.opensAtMs) + ADMISSION_TIMEOUT * 1000;
  const conn = { close: () => {} };
  let outcome = rec.admittedAt !== null ? 'admitted' : await follow(token, rec, data, deadline, conn);
  if (outcome.startsWith('transport:')) {
    console.warn(`fan ${i}: ${outcome}; polling instead`);
    outcome = await poll(token, rec, data, deadline);
  }
  rec.outcome = outcome;
  if (rec.prequeued && rec.socketOpenedAt !== null && rec.socketOpenedAt < data.opensAtMs) {
    const heard = [rec.firstPositionAt, rec.admittedAt].filter((t) => t !== null);
    if (heard.length > 0) news.add(Math.min(...heard) - data.opensAtMs);
  }
  if (outcome === 'admitted') {
    k6.time('admission', rec.admittedAt - Math.max(rec.joinedAt, data.opensAtMs));
  } else {
    k6.recordFailure('admission', `fan ${i} (${rec.prequeued ? 'pre-queued' : 'after the opening'}): ${outcome}`);
  }
  await leave(token, rec);
  conn.close();
}

export async function fans(data) {
  const first = (exec.vu.idInTest - 1) * FANS_PER_VU;
  const mine = [];
  for (let i = first; i < Math.min(first + FANS_PER_VU, FANS); i++) {
    const rec = newRecord(i);
    mine.push(fan(data, rec)
      .catch((e) => {
        rec.outcome = `exception: ${e}`;
        k6.recordFailure('admission', `fan ${i}: ${e}`);
      })
      .then(() => console.log(`sale-fan ${JSON.stringify(rec)}`)));
  }
  await Promise.all(mine);
}

export function teardown(data) {
  const res = http.get(`${k6.BASE}/v1/admin/concerts/${data.concertId}/sale`,
    { headers: { 'X-Api-Key': k6.ADMIN_KEY }, tags: { name: 'teardown' } });
  const report = k6.json(res);
  console.log(`sale-report ${JSON.stringify(report)}`);
  check(report, {
    'sale report: OPEN after the opening': (r) => Boolean(r) && r.state === 'OPEN',
    'sale report: nobody left waiting or pre-queued': (r) => Boolean(r) && r.waiting === 0 && r.preQueued === 0,
  });
}
