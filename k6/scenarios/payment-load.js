// Scenario 3, Payment Load: users hold a fresh seat and pay it with points, once.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=...] [-e SEATS=n] k6/scenarios/payment-load.js
//
// report profile: 20 s -> 20 VUs, 1 min 30 s at 20, 20 s -> 0. Each VU is one user
// whose points are charged once; every iteration joins the waiting room (paying ends
// the token), waits to be let in, holds the next unsold seat (one per iteration across
// all VUs, so nobody re-pays anything: the original report's script paid the same 20
// reservations over and over) and pays it with a fresh Idempotency-Key.

import exec from 'k6/execution';
import * as k6 from '../lib/common.js';

const PRICE = 1000;
// Enough seats for every iteration the profile can run (at most one per VU-second).
const SEATS = Number(__ENV.SEATS || {
  report: 20000,
  smoke: 2000,
  spike: 100 * Number(__ENV.VUS || 1000),
  endurance: 100000,
  capacity: 25 * Number(__ENV.RATE || 1000),
}[k6.PROFILE]);
const STAGES = [
  { duration: '20s', target: 20 },
  { duration: '1m30s', target: 20 },
  { duration: '20s', target: 0 },
];

export const options = k6.options('payment_load', k6.executor('holdAndPay', STAGES), ['join', 'hold', 'pay']);

export function setup() {
  return k6.seedConcert('Payment Load', [SEATS], PRICE);
}

let charged = false; // per VU

export async function holdAndPay(data) {
  const ticket = await k6.join(data.concertId, k6.userId('pay'));
  const token = ticket && k6.admitted(ticket);
  if (!token) return k6.think(1);
  if (!charged) {
    charged = k6.charge(token, 10000000); // the most one charge may add
    if (!charged) return k6.think(1);
  }
  const seatNo = exec.scenario.iterationInTest + 1;
  if (seatNo > SEATS) {
    k6.recordFailure('hold', `ran out of seats (${SEATS}); pass -e SEATS=more`);
    return k6.think(1);
  }
  const { reservation } = k6.hold(token, data.scheduleIds[0], seatNo, PRICE, false);
  if (reservation) k6.pay(token, reservation);
  k6.think(1);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, [SEATS]);
}
