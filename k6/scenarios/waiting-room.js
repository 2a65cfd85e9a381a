// Scenario 5, the waiting room over WebSockets: a crowd joins at once, each waits on a
// socket until it is let in, then books and pays; how long the wait was is the result.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=...] [-e WAITERS=n] k6/scenarios/waiting-room.js
//
// WAITERS users (500 in the report profile; 50 in smoke, VUS in spike) arrive within
// SPREAD seconds (10). Each joins, opens /v1/queue/ws?token=..., reads its position
// pushes until `admitted`, then charges points, holds its own seat and pays, which ends
// its token and frees its place for the next. `call_admission` is the time from the
// join's answer to the `admitted` message. For a line to form, run the app with a
// small capacity and rate, as k6/run does (BOXOFFICE_QUEUE_CAPACITY=50,
// BOXOFFICE_QUEUE_ADMIT_RATE=50).

import { sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';
import * as k6 from '../lib/common.js';

const PRICE = 1000;
const WAITERS = Number(__ENV.WAITERS || { report: 500, smoke: 50, spike: Number(__ENV.VUS || 1000) }[k6.PROFILE] || 500);
const SPREAD = Number(__ENV.SPREAD || 10);
const ADMISSION_TIMEOUT = Number(__ENV.ADMISSION_TIMEOUT || 240);

if (k6.OPEN_MODEL) throw new Error('the waiting room is a closed crowd: no capacity profile for it');

export const options = k6.options('waiting_room', {
  executor: 'per-vu-iterations',
  vus: WAITERS,
  iterations: 1,
  maxDuration: `${SPREAD + ADMISSION_TIMEOUT + 60}s`,
  exec: 'waitOnSocket',
}, ['join', 'charge', 'hold', 'pay']);

const positionsHeard = new Counter('ws_positions');

export function setup() {
  return k6.seedConcert('Waiting Room', [WAITERS], PRICE);
}

/** Resolves with 'admitted', or with why not (expired, closed, timed out). */
function untilAdmitted(token) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${k6.WS_BASE}/v1/queue/ws?token=${encodeURIComponent(token)}`);
    let settled = false;
    const settle = (outcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.close();
      resolve(outcome);
    };
    const timer = setTimeout(() => settle(`not admitted within ${ADMISSION_TIMEOUT} s`), ADMISSION_TIMEOUT * 1000);
    ws.onmessage = (event) => {
      let message = null;
      try {
        message = JSON.parse(event.data);
      } catch (_) {
        return settle(`unreadable message: ${String(event.data).slice(0, 100)}`);
      }
      if (message.type === 'position') positionsHeard.add(1);
      else if (message.type === 'admitted') settle('admitted');
      else if (message.type === 'expired') settle('expired before admission');
    };
    ws.onclose = (event) => settle(`socket closed (${event.code}) before admission`);
    ws.onerror = (event) => settle(`socket error: ${event.error}`);
  });
}

export async function waitOnSocket(data) {
  sleep(Math.random() * SPREAD);
  const ticket = await k6.join(data.concertId, k6.userId('ws'));
  if (!ticket) return;
  const joined = Date.now();
  const outcome = await untilAdmitted(ticket.token);
  if (outcome !== 'admitted') {
    k6.recordFailure('admission', outcome);
    return;
  }
  k6.time('admission', Date.now() - joined);
  if (!k6.charge(ticket.token, PRICE)) return;
  // Each waiter has a seat of its own: the wait, not the seat, is what is measured here.
  const { reservation } = k6.hold(ticket.token, data.scheduleIds[0], __VU, PRICE, false);
  if (reservation) k6.pay(ticket.token, reservation);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, [WAITERS]);
}
