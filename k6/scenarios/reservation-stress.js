// Scenario 2, Reservation Stress: admitted users fight over the 50 seats of one schedule.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=...] k6/scenarios/reservation-stress.js
//
// report profile: 20 s -> 20 VUs, 30 s -> 50 VUs, 1 min at 50, 20 s -> 0. Each VU is
// one user: it joins the waiting room once and waits until it is let in, then every
// iteration holds a random seat and keeps what it wins. Once the 50 are gone every
// attempt is a 409 SEAT_TAKEN: an expected answer, never a failure.

import * as k6 from '../lib/common.js';

const SEATS = 50;
const PRICE = 1000;
const STAGES = [
  { duration: '20s', target: 20 },
  { duration: '30s', target: 50 },
  { duration: '1m', target: 50 },
  { duration: '20s', target: 0 },
];

export const options = k6.options('reservation_stress', k6.executor('fightForSeats', STAGES), ['join', 'hold']);

export function setup() {
  return k6.seedConcert('Reservation Stress', [SEATS], PRICE);
}

let token = null; // per VU

export async function fightForSeats(data) {
  if (!token) {
    const ticket = await k6.join(data.concertId, k6.userId('stress'));
    token = ticket && k6.admitted(ticket);
    if (!token) return k6.think(1);
  }
  const seatNo = 1 + Math.floor(Math.random() * SEATS);
  const { status } = k6.hold(token, data.scheduleIds[0], seatNo, PRICE, true);
  if (status === 401) token = null; // the token lapsed (long runs): join again
  k6.think(1);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, [SEATS]);
}
