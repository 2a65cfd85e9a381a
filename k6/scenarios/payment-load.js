// Scenario 3, Payment Load: fans hold orders of 1 to 4 fresh seats, pay each once, and
// cancel some of what they paid.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=...] [-e SEATS=n] [-e CANCEL_SHARE=0.2]
//          k6/scenarios/payment-load.js
//
// report profile: 20 s -> 20 VUs, 1 min 30 s at 20, 20 s -> 0. Each VU plays one fan at
// a time, whose points are charged once; every iteration joins the waiting room (paying
// ends the token), waits to be let in, holds an order of 1-4 seats and pays it with a
// fresh Idempotency-Key; with probability CANCEL_SHARE it then cancels it (with the
// same token, which the payment ended) and must get the total back less the concert's
// 10% fee, rounded down. A fan may own 100 seats of a concert: a VU moves on to a new
// fan before its orders could pass that, so SEAT_LIMIT is never an answer here.
//
// The concert has two schedules of SEATS seats, each in three grades (VIP the first
// quarter at 15005 points, R the second at 10003, S the second half at 5001: prices
// whose 10% is not whole, so the fee's rounding shows). Even iterations order seats by
// number on the first schedule: iteration 2b takes from block b (seat b+1 of VIP, seat
// b+1 of R and seats 2b+1 and 2b+2 of S, in that order, as many as the order's size),
// so no seat is ever asked for twice and most orders span grades. Odd iterations order
// by grade and quantity on the second schedule, where concurrent fans compete for the
// lowest free seats of a grade (a 409 SEAT_TAKEN or NOT_ENOUGH_SEATS there is an
// outcome) and cancelled seats are sold again.

import exec from 'k6/execution';
import * as k6 from '../lib/common.js';

const GRADES = [
  { name: 'VIP', price: 15005, share: 0.25 },
  { name: 'R', price: 10003, share: 0.25 },
  { name: 'S', price: 5001, share: 0.5 },
];
const FEE_PERCENT = 10;
const CANCEL_SHARE = Number(__ENV.CANCEL_SHARE || 0.2);
const MAX_SEATS_PER_FAN = 100;
const CHARGE = 10000000; // the most one charge may add; a fan's 100 seats cost at most 1,500,500

function seconds(duration) { // 20s, 2m, 1m30s -> seconds
  let total = 0;
  for (const [, n, unit] of String(duration).matchAll(/(\d+)([hms])/g)) {
    total += Number(n) * { h: 3600, m: 60, s: 1 }[unit];
  }
  return total;
}

// Seats per schedule, a multiple of 4 (at most 100,000, the most a schedule has): the
// first schedule serves one block of 4 per two iterations, so SEATS / 2 iterations;
// the profiles run at most one iteration per VU-second (and the waiting room admits at
// most 100 a second by default).
const SEATS = 4 * Math.ceil(Math.min(100000, Number(__ENV.SEATS || {
  report: 20000,
  smoke: 2000,
  spike: 100 * Number(__ENV.VUS || 1000),
  endurance: 100000,
  capacity: 2.2 * Number(__ENV.RATE || 1000) * seconds(__ENV.STEP || '20s'),
}[k6.PROFILE])) / 4);
const QUARTER = SEATS / 4;
const STAGES = [
  { duration: '20s', target: 20 },
  { duration: '1m30s', target: 20 },
  { duration: '20s', target: 0 },
];

export const options = k6.options('payment_load', k6.executor('holdAndPay', STAGES),
  ['join', 'order', 'order_pay', 'cancel']);

export function setup() {
  return k6.seedConcert('Payment Load', [SEATS, SEATS], GRADES,
    { cancellation: { cutoffHours: 24, feePercent: FEE_PERCENT } });
}

/** Block b's seats on the first schedule: S, VIP, R, S (the first `size` of them). */
function block(b, size) {
  return [2 * QUARTER + 2 * b + 1, b + 1, QUARTER + b + 1, 2 * QUARTER + 2 * b + 2].slice(0, size);
}

// per VU: the fan it plays now, the seats that fan ordered, whether it was charged
let fan = 0;
let fanSeats = 0;
let charged = false;

export async function holdAndPay(data) {
  if (fanSeats + 4 > MAX_SEATS_PER_FAN) {
    fan += 1;
    fanSeats = 0;
    charged = false;
  }
  const ticket = await k6.join(data.concertId, `${k6.userId('pay')}-${fan}`);
  const token = ticket && k6.admitted(ticket);
  if (!token) return k6.think(1);
  if (!charged) {
    charged = k6.charge(token, CHARGE);
    if (!charged) return k6.think(1);
  }
  const iteration = exec.scenario.iterationInTest;
  const size = 1 + Math.floor(Math.random() * 4);
  let held;
  if (iteration % 2 === 0) {
    const b = iteration / 2;
    if (b >= QUARTER) {
      k6.recordFailure('order', `ran out of seats (${SEATS} per schedule); pass -e SEATS=more`);
      return k6.think(1);
    }
    held = k6.order(token, data.scheduleIds[0], { seats: block(b, size) }, data.grades[0], []).order;
  } else {
    const grade = GRADES[Math.floor(Math.random() * GRADES.length)].name;
    held = k6.order(token, data.scheduleIds[1], { grade, quantity: size }, data.grades[1],
      ['NOT_ENOUGH_SEATS', 'SEAT_TAKEN']).order;
  }
  if (!held) return k6.think(1);
  fanSeats += size; // never taken back: whatever the app counts, the fan stays under its limit
  const payment = k6.payOrder(token, held);
  if (payment && Math.random() < CANCEL_SHARE) k6.cancelOrder(token, held, data.feePercent, payment.balanceAfter);
  k6.think(1);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, [SEATS, SEATS], data.grades);
}
