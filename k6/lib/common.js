// What every scenario shares: where the app is, the load profile, seeding through the
// admin API, and one way to record a call (its time, whether its answer was one we
// expect, a check on its body).
//
// Environment (all optional):
//   BASE_URL       the app (http://127.0.0.1:8080); BASE_URLS, comma-separated, for several
//                  instances of one deployment: each VU sticks to one of them
//   ADMIN_API_KEY  the operator key, for seeding (dev-admin-key, as `./dev up` sets it)
//   PROFILE        report (default) | smoke | spike | endurance | capacity
//   VUS            peak VUs for `spike` (1000); ENDURANCE hold time for `endurance` (30m)
//   RATE, STEP     for `capacity`: iterations per second, and for how long (20s)
//   RUN_ID         makes users and keys unique per run (defaults to the start time)
//   ISSUER_JWK ... who the users are at join: see lib/identity.js (signed id tokens
//                  for an app in jwt mode, plain userIds without)

import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import * as identity from './identity.js';

const BASES = (__ENV.BASE_URLS || __ENV.BASE_URL || 'http://127.0.0.1:8080').split(',')
  .map((url) => url.trim().replace(/\/$/, ''));
// __VU is 0 in setup() and teardown(): the first instance seeds and checks.
export const BASE = BASES[__VU % BASES.length];
export const WS_BASE = BASE.replace(/^http/, 'ws');
export const ADMIN_KEY = __ENV.ADMIN_API_KEY || 'dev-admin-key';
export const PROFILE = __ENV.PROFILE || 'report';
export const RUN = __ENV.RUN_ID || Date.now().toString(36);
/** True when iterations arrive at a fixed rate (open model): no think time then. */
export const OPEN_MODEL = PROFILE === 'capacity';

// Expected answers are not failures: a taken seat (409), a token still waiting (403)
// and a refused payment (409/422) are outcomes of a rush, as the original report's
// k6 runs failed to see. `errors` below is the rate of real failures.
http.setResponseCallback(http.expectedStatuses(200, 201, 403, 409, 422));

export const errors = new Rate('errors');
// k6 wants every custom metric made in the init context: one Trend (ms) and one
// failure Counter per call any scenario makes.
const CALLS = ['join', 'queue_status', 'hold', 'release', 'charge', 'pay', 'concerts', 'schedules', 'seats',
  'admission', 'order', 'order_release', 'order_pay', 'cancel'];
const trends = {};
const failures = {};
for (const call of CALLS) {
  trends[call] = new Trend(`call_${call}`, true);
  failures[call] = new Counter(`fail_${call}`);
}
// What became of the orders asked for (expected outcomes included), for the report:
// orders_<outcome> counts orders, order_seats_held their seats.
const ORDER_OUTCOMES = ['held', 'seat_taken', 'not_enough_seats', 'seat_limit', 'paid', 'cancelled', 'released'];
const orderOutcomes = {};
for (const outcome of ORDER_OUTCOMES) orderOutcomes[outcome] = new Counter(`orders_${outcome}`);
const orderSeatsHeld = new Counter('order_seats_held');
const HOLD_REFUSALS = { SEAT_TAKEN: 'seat_taken', NOT_ENOUGH_SEATS: 'not_enough_seats', SEAT_LIMIT: 'seat_limit' };

/**
 * The scenario's executor for the chosen PROFILE. `report` is the original report's
 * ramp (k6 stages); the others keep its shape and change the scale or the model.
 */
export function executor(fn, reportStages) {
  const peak = Math.max(...reportStages.map((s) => s.target));
  const ramping = (stages) => ({ executor: 'ramping-vus', startVUs: 0, stages, gracefulRampDown: '10s', exec: fn });
  switch (PROFILE) {
    case 'report':
      return ramping(reportStages);
    case 'smoke':
      return ramping([
        { duration: '3s', target: Math.min(peak, 20) },
        { duration: '9s', target: Math.min(peak, 20) },
        { duration: '3s', target: 0 },
      ]);
    case 'spike': {
      const vus = Number(__ENV.VUS || 1000);
      return ramping([
        { duration: '10s', target: Math.ceil(vus / 5) },
        { duration: '20s', target: vus },
        { duration: '30s', target: vus },
        { duration: '10s', target: 0 },
      ]);
    }
    case 'endurance':
      return ramping([
        { duration: '1m', target: peak },
        { duration: __ENV.ENDURANCE || '30m', target: peak },
        { duration: '30s', target: 0 },
      ]);
    case 'capacity': {
      const rate = Number(__ENV.RATE || 1000);
      return {
        executor: 'constant-arrival-rate',
        rate,
        timeUnit: '1s',
        duration: __ENV.STEP || '20s',
        // Enough VUs to keep the rate while each call takes up to ~50 ms.
        preAllocatedVUs: Math.max(20, Math.ceil(rate / 20)),
        maxVUs: Math.max(100, Math.ceil(rate / 2)),
        exec: fn,
      };
    }
    default:
      throw new Error(`unknown PROFILE=${PROFILE}: use report, smoke, spike, endurance or capacity`);
  }
}

/**
 * The service-level objective per call, in ms, answers of every kind included (a fast
 * 409 counts as much as a 201): what an operator promises for a sale on a Small box.
 * The original report's worst P95 on Small was 35 ms.
 */
export const SLO = { p95: 25, p99: 100 };

/**
 * Options for a scenario: its executor (usually `executor(...)`), and thresholds that
 * say what a passing run is. `calls` are the calls the scenario times; each must meet
 * the `slo`.
 */
export function options(name, scenario, calls, slo = SLO) {
  const thresholds = {
    // Real failures: 5xx, transport errors, unexpected statuses, wrong bodies.
    errors: ['rate<0.01'],
    // With the expected statuses above, http_req_failed counts only unexpected ones.
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
  };
  for (const call of calls) {
    thresholds[`call_${call}`] = [`p(95)<${slo.p95}`, `p(99)<${slo.p99}`];
  }
  // The scenario's own requests, setup excluded: the figure the report tabulates.
  thresholds[`http_req_duration{scenario:${name}}`] = [`p(95)<${slo.p95}`];
  if (OPEN_MODEL) {
    // At a fixed arrival rate, iterations k6 could not start mean the app fell behind.
    thresholds.dropped_iterations = [`rate<${Number(__ENV.RATE || 1000) * 0.01}`];
  }
  return {
    scenarios: { [name]: scenario },
    thresholds,
    summaryTrendStats: ['count', 'avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
    setupTimeout: '120s',
    teardownTimeout: '60s',
  };
}

function trend(call) {
  if (!trends[call]) throw new Error(`call ${call} is not in CALLS (k6/lib/common.js)`);
  return trends[call];
}

/** Times a call that is not one HTTP request (a socket's wait for admission, say). */
export function time(call, ms) {
  trend(call).add(ms);
}

export function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

/**
 * Records one call: its time in `call_<name>`, and whether `expected(res, body)` holds.
 * Anything else (a 5xx, a dropped connection, an unexpected status or body) is a real
 * failure: counted in `errors` and `fail_<name>` and logged. Returns the parsed body.
 */
export function record(call, res, expected) {
  const body = json(res);
  trend(call).add(res.timings.duration);
  const good = res.status !== 0 && res.status < 500 && Boolean(expected(res, body));
  errors.add(!good, { call });
  if (!good) {
    failures[call].add(1);
    const code = body && body.code ? body.code : '';
    console.warn(`${call}: unexpected ${res.status} ${code} ${String(res.body || res.error).slice(0, 200)}`);
  }
  check(res, { [`${call}: expected answer`]: () => good });
  return body;
}

/** Records a failure that is not an HTTP answer (a socket that never admitted, say). */
export function recordFailure(call, why) {
  trend(call);
  failures[call].add(1);
  errors.add(true, { call });
  check(null, { [`${call}: ${why}`]: () => false });
  console.warn(`${call}: ${why}`);
}

export function params(call, token, extraHeaders) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  return { headers: Object.assign(headers, extraHeaders || {}), tags: { name: call } };
}

/** The report's think time between iterations (none at a fixed arrival rate). */
export function think(seconds = 1) {
  if (!OPEN_MODEL) sleep(seconds);
}

/** A user id unique to this run, VU and (optionally) iteration. */
export function userId(kind, perIteration = false) {
  const base = `k6-${RUN}-${kind}-${exec.vu.idInTest}`;
  return perIteration ? `${base}-${exec.vu.iterationInScenario}` : base;
}

let keySeq = 0;
export function idempotencyKey(kind) {
  keySeq += 1;
  return `${RUN}-${kind}-${exec.vu.idInTest}-${keySeq}`;
}

// ------------------------------------------------------------------ the API

export function waitReady() {
  for (let i = 0; i < 60; i++) {
    const res = http.get(`${BASE}/health/ready`, { tags: { name: 'setup' } });
    if (res.status === 200) return;
    sleep(1);
  }
  fail(`the app at ${BASE} is not ready`);
}

/**
 * A schedule's grades: `spec` is [{ name, price, share }...] in seat order; each grade
 * takes `share` of the seats (at least one), the last one the rest. A schedule with
 * fewer seats than `spec` has grades gets only the first ones.
 */
export function splitGrades(seatCount, spec) {
  const used = spec.slice(0, Math.min(spec.length, seatCount));
  const grades = [];
  let next = 1;
  used.forEach((g, i) => {
    const after = used.length - i - 1; // grades still to come, a seat each at least
    const last = after === 0 ? seatCount
      : Math.min(seatCount - after, next - 1 + Math.max(1, Math.floor(seatCount * g.share)));
    grades.push({ name: g.name, price: g.price, firstSeat: next, lastSeat: last });
    next = last + 1;
  });
  return grades;
}

/** The grade `seatNo` is in, of a schedule's `grades` (as seedConcert returns them). */
export function gradeOf(grades, seatNo) {
  return grades.find((g) => g.firstSeat <= seatNo && seatNo <= g.lastSeat) || null;
}

/**
 * Creates a concert with one schedule per entry of `seatCounts`; returns its ids and
 * each schedule's grades. `pricing` is either one price for every seat (the old way:
 * one grade, STANDARD) or the grades: [{ name, price, share }...] (see splitGrades),
 * or a function (seatCount, i) -> [{ name, price, firstSeat, lastSeat }...] for the
 * i-th schedule. A graded concert is read back through GET /v1/concerts/{id}/schedules
 * and setup fails unless every grade is there as created, all seats available.
 *
 * `sale.maxSeatsPerFan` defaults to 100 (the most a sale allows): the load profiles
 * replay the original report, where one VU plays one user who holds or buys seat after
 * seat, so the default of 4 seats per fan would turn them into SEAT_LIMIT refusals.
 * `sale.cancellation` ({ cutoffHours, feePercent }) is sent as given (the app's
 * defaults, 24 h and 10%, otherwise); the returned feePercent is what applies.
 */
export function seedConcert(title, seatCounts, pricing, sale = {}) {
  waitReady();
  const graded = typeof pricing !== 'number';
  const grades = seatCounts.map((seatCount, i) => {
    if (!graded) return [{ name: 'STANDARD', price: pricing, firstSeat: 1, lastSeat: seatCount }];
    return typeof pricing === 'function' ? pricing(seatCount, i) : splitGrades(seatCount, pricing);
  });
  const body = {
    title: `${title} (k6 ${RUN})`,
    artist: 'k6',
    schedules: seatCounts.map((seatCount, i) => Object.assign(
      { venue: `Hall ${i + 1}`, startsAt: `2027-0${1 + (i % 9)}-01T19:00:00Z` },
      graded ? { grades: grades[i] } : { seatCount, price: pricing },
    )),
    sale: { maxSeatsPerFan: sale.maxSeatsPerFan || 100 },
  };
  if (sale.cancellation) body.cancellation = sale.cancellation;
  const res = http.post(`${BASE}/v1/admin/concerts`, JSON.stringify(body),
    { headers: { 'Content-Type': 'application/json', 'X-Api-Key': ADMIN_KEY }, tags: { name: 'setup' }, timeout: '120s' });
  if (res.status !== 201) fail(`seeding the concert: ${res.status} ${res.body}`);
  const seeded = {
    concertId: res.json('concertId'),
    scheduleIds: res.json('scheduleIds'),
    grades,
    feePercent: sale.cancellation && sale.cancellation.feePercent !== undefined ? sale.cancellation.feePercent : 10,
  };
  if (graded) checkGrades(seeded, seatCounts);
  return seeded;
}

/** Setup's check that the schedules list the grades seeded, every seat available. */
function checkGrades(seeded, seatCounts) {
  const res = http.get(`${BASE}/v1/concerts/${seeded.concertId}/schedules`, { tags: { name: 'setup' } });
  const list = json(res);
  seeded.scheduleIds.forEach((id, i) => {
    const schedule = list && Array.isArray(list.schedules) ? list.schedules.find((s) => s.id === id) : null;
    const got = schedule && Array.isArray(schedule.grades) ? schedule.grades : [];
    const want = seeded.grades[i];
    const same = got.length === want.length && want.every((g, j) => got[j].name === g.name
      && got[j].price === g.price && got[j].firstSeat === g.firstSeat && got[j].lastSeat === g.lastSeat
      && got[j].seatCount === g.lastSeat - g.firstSeat + 1 && got[j].available === got[j].seatCount);
    if (!schedule || schedule.seatCount !== seatCounts[i] || !same) {
      fail(`schedule ${id} does not list the grades it was created with: ${JSON.stringify(schedule)}`);
    }
  });
}

const TOKEN = /^[0-9]+\.[0-9a-f]{64}$/;

/**
 * Joins the waiting room as `user`: with a signed id token for that user when k6 runs
 * against an app in jwt mode (lib/identity.js), else with the plain userId. `preMinted`
 * (identity.pooled(i)) joins as its user with its token instead. Returns the ticket
 * (token, state, position) or null; the ticket must belong to the user.
 */
export async function join(concertId, user, preMinted) {
  const who = preMinted ? preMinted.user : user;
  const body = Object.assign({ concertId }, await identity.credentials(who, preMinted));
  const res = http.post(`${BASE}/v1/queue/tokens`, JSON.stringify(body), params('join'));
  const ticket = record('join', res, (r, b) =>
    (r.status === 201 || r.status === 200) && b && TOKEN.test(b.token) && b.userId === who
      && (b.state === 'ACTIVE' || (b.state === 'WAITING' && Number.isInteger(b.position) && b.position >= 1)));
  return ticket && ticket.token ? ticket : null;
}

/**
 * Waits, polling as a client without a socket would, until the ticket is ACTIVE.
 * Returns the token, or null if it was not let in within `seconds`.
 */
export function admitted(ticket, seconds = 30) {
  let state = ticket.state;
  const deadline = Date.now() + seconds * 1000;
  while (state === 'WAITING' && Date.now() < deadline) {
    sleep(0.1);
    const res = http.get(`${BASE}/v1/queue/tokens/current`, params('queue_status', ticket.token));
    const body = record('queue_status', res, (r, b) => r.status === 200 && b && b.state);
    state = body ? body.state : null;
  }
  return state === 'ACTIVE' ? ticket.token : null;
}

/** The refusal codes a call may expect: `true` is SEAT_TAKEN alone (contested seats). */
function refusalCodes(refusals) {
  if (refusals === true) return ['SEAT_TAKEN'];
  return Array.isArray(refusals) ? refusals : [];
}

/** A 409 whose code is one of `codes`, counted under its order outcome. */
function expectedRefusal(r, b, codes) {
  return r.status === 409 && b && codes.includes(b.code);
}

/**
 * Holds one seat the v1 way (an order of one seat). `refusals`: the 409 codes that are
 * outcomes here, not failures (`true`: SEAT_TAKEN, where seats are contested).
 */
export function hold(token, scheduleId, seatNo, price, refusals) {
  const codes = refusalCodes(refusals);
  const res = http.post(`${BASE}/v1/reservations`, JSON.stringify({ scheduleId, seatNo }), params('hold', token));
  const body = record('hold', res, (r, b) => {
    if (r.status === 201) {
      return b && b.status === 'HELD' && b.seatNo === seatNo && b.price === price && Number.isInteger(b.orderId);
    }
    return expectedRefusal(r, b, codes);
  });
  return { status: res.status, code: body && body.code, reservation: res.status === 201 ? body : null };
}

/**
 * Holds an order: `choice` is { seats: [n...] } or { grade, quantity }, `grades` the
 * schedule's (seedConcert's). A 201 must hold exactly the seats asked for (or that many
 * of the grade), each at its grade's price, and total their prices. `refusals`: the 409
 * codes that are outcomes here (SEAT_TAKEN, NOT_ENOUGH_SEATS, SEAT_LIMIT). Returns
 * { status, code, order }.
 */
export function order(token, scheduleId, choice, grades, refusals) {
  const codes = refusalCodes(refusals);
  const asked = Object.assign({ scheduleId }, choice);
  const count = choice.seats ? choice.seats.length : choice.quantity;
  const res = http.post(`${BASE}/v1/orders`, JSON.stringify(asked), params('order', token));
  const body = record('order', res, (r, b) => {
    if (r.status !== 201) return expectedRefusal(r, b, codes);
    if (!b || b.status !== 'HELD' || b.scheduleId !== scheduleId || !Number.isInteger(b.id)
      || !Array.isArray(b.seats) || b.seats.length !== count || typeof b.heldUntil !== 'string'
      || b.refund != null || b.fee != null || b.cancelledAt != null) return false;
    const numbers = b.seats.map((seat) => seat.seatNo);
    if (new Set(numbers).size !== count || new Set(b.seats.map((seat) => seat.reservationId)).size !== count) return false;
    if (choice.seats) {
      const want = choice.seats.slice().sort((x, y) => x - y);
      if (numbers.slice().sort((x, y) => x - y).some((n, i) => n !== want[i])) return false;
    }
    let total = 0;
    for (const seat of b.seats) {
      const grade = gradeOf(grades, seat.seatNo);
      if (!grade || seat.grade !== grade.name || seat.price !== grade.price || !Number.isInteger(seat.reservationId)) return false;
      if (choice.grade && seat.grade !== choice.grade) return false;
      total += seat.price;
    }
    return b.total === total;
  });
  const code = body && body.code;
  if (res.status === 201) {
    orderOutcomes.held.add(1);
    orderSeatsHeld.add(count);
  } else if (res.status === 409 && HOLD_REFUSALS[code]) {
    orderOutcomes[HOLD_REFUSALS[code]].add(1);
  }
  return { status: res.status, code, order: res.status === 201 ? body : null };
}

/** Releases one's held order (DELETE /v1/orders/{id}); true when it answered as it should. */
export function releaseOrder(token, held) {
  const res = http.del(`${BASE}/v1/orders/${held.id}`, null, params('order_release', token));
  const body = record('order_release', res, (r, b) =>
    r.status === 200 && b && b.id === held.id && (b.status === 'RELEASED' || b.status === 'EXPIRED'));
  if (body && body.status === 'RELEASED') orderOutcomes.released.add(1);
  return res.status === 200;
}

/** Pays a held order once (a fresh Idempotency-Key); returns the payment, or null. */
export function payOrder(token, held) {
  const res = http.post(`${BASE}/v1/orders/${held.id}/payment`, null,
    params('order_pay', token, { 'Idempotency-Key': idempotencyKey('order-pay') }));
  const body = record('order_pay', res, (r, b) =>
    r.status === 201 && b && Number.isInteger(b.id) && b.orderId === held.id && b.amount === held.total
      && Number.isInteger(b.balanceAfter) && b.balanceAfter >= 0 && typeof b.paidAt === 'string');
  if (res.status !== 201) return null;
  orderOutcomes.paid.add(1);
  return body;
}

/**
 * Cancels a paid order (any valid token of its owner: paying ended it). The fee is
 * feePercent of the total rounded down, the refund the rest; `balanceBefore` (the
 * payment's balanceAfter, when nothing else moved the wallet since) plus the refund
 * must be the balance after. Returns the cancellation, or null.
 */
export function cancelOrder(token, paid, feePercent, balanceBefore) {
  const fee = Math.floor((paid.total * feePercent) / 100);
  const res = http.post(`${BASE}/v1/orders/${paid.id}/cancellation`, null,
    params('cancel', token, { 'Idempotency-Key': idempotencyKey('cancel') }));
  const body = record('cancel', res, (r, b) =>
    r.status === 201 && b && b.orderId === paid.id && b.fee === fee && b.refund === paid.total - fee
      && (typeof balanceBefore !== 'number' || b.balanceAfter === balanceBefore + b.refund)
      && typeof b.cancelledAt === 'string');
  if (res.status !== 201) return null;
  orderOutcomes.cancelled.add(1);
  return body;
}

/** Charges points; true when charged (chargedBalance() is then the balance after). */
export function charge(token, amount) {
  const res = http.post(`${BASE}/v1/points/charges`, JSON.stringify({ amount }),
    params('charge', token, { 'Idempotency-Key': idempotencyKey('charge') }));
  const body = record('charge', res, (r, b) => r.status === 201 && b && b.balance >= amount);
  lastBalance = res.status === 201 && body ? body.balance : null;
  return res.status === 201;
}

let lastBalance = null; // per VU
/** The balance the last successful charge of this VU answered. */
export function chargedBalance() {
  return lastBalance;
}

/** Pays a held reservation once (a fresh Idempotency-Key); true when paid. */
export function pay(token, reservation) {
  const res = http.post(`${BASE}/v1/payments`, JSON.stringify({ reservationId: reservation.id }),
    params('pay', token, { 'Idempotency-Key': idempotencyKey('pay') }));
  record('pay', res, (r, b) =>
    r.status === 201 && b && b.reservationId === reservation.id && b.amount === reservation.price);
  return res.status === 201;
}

/** The app's counters, read from /metrics: `{ 'name{labels}': value }`. */
export function scrape() {
  const res = http.get(`${BASE}/metrics`, { tags: { name: 'metrics' } });
  const samples = {};
  if (res.status !== 200) return samples;
  for (const line of res.body.split('\n')) {
    if (!line || line[0] === '#') continue;
    const at = line.lastIndexOf(' ');
    samples[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return samples;
}

// ------------------------------------------------------------------ invariants

/**
 * What must hold after any scenario, read back through the API: for each schedule, the
 * seat map's SOLD seats are at most its seats and every seat appears once, and with
 * `grades` (seedConcert's) every seat carries its grade's name and price. The runner
 * (k6/run) checks the same and more in MySQL: no seat sold twice, points debited =
 * prices paid, refunds and fees.
 */
export function checkSeatMaps(scheduleIds, seatCounts, grades) {
  scheduleIds.forEach((id, i) => {
    const res = http.get(`${BASE}/v1/schedules/${id}/seats`, { tags: { name: 'invariants' } });
    const map = json(res);
    const seats = map && Array.isArray(map.seats) ? map.seats : [];
    const numbers = new Set(seats.map((s) => s.seatNo));
    const sold = seats.filter((s) => s.status === 'SOLD').length;
    const misgraded = grades ? seats.filter((s) => {
      const g = gradeOf(grades[i], s.seatNo);
      return !g || s.grade !== g.name || s.price !== g.price;
    }).length : 0;
    const checks = {
      [`invariant: schedule ${id} seat map lists each of its ${seatCounts[i]} seats once`]: () =>
        seats.length === seatCounts[i] && numbers.size === seats.length,
      [`invariant: schedule ${id} sold seats (${sold}) <= seats (${seatCounts[i]})`]: () => sold <= seatCounts[i],
    };
    if (grades) {
      checks[`invariant: schedule ${id} every seat shows its grade and price (${misgraded} do not)`] = () => misgraded === 0;
    }
    const ok = check(map, checks);
    if (!ok) {
      console.error(`invariant broken on schedule ${id}: ${seats.length} seats listed, ${numbers.size} distinct, `
        + `${sold} sold, ${misgraded} with the wrong grade or price`);
    }
    console.log(`schedule ${id}: ${sold} of ${seatCounts[i]} seats sold, ${seats.filter((s) => s.status === 'HELD').length} held`);
  });
}
