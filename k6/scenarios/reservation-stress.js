// Scenario 2, Reservation Stress: admitted fans fight over the 50 seats of one schedule
// in orders of 1 to 4 seats.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=...] [-e RELEASE_SHARE=0.3] [-e V1_SHARE=0.1]
//          k6/scenarios/reservation-stress.js
//
// report profile: 20 s -> 20 VUs, 30 s -> 50 VUs, 1 min at 50, 20 s -> 0. Each VU is
// one fan: it joins the waiting room once and waits until it is let in. The schedule's
// 50 seats are in three grades (VIP 1-10, R 11-25, S 26-50, at 3000, 2000 and 1000
// points) and a fan may hold 4 of them (the sale's default). Every iteration, a fan
// that holds an order gives one back with probability RELEASE_SHARE (DELETE
// /v1/orders/{id}), so that seats keep changing hands; otherwise it asks for 1-4 seats:
// half the time by number (a random block of adjacent seats, often across two grades),
// half the time by grade and quantity (a random grade), and with probability V1_SHARE
// one seat the v1 way (POST /v1/reservations, an order of one seat, competing for the
// same seats). 409 SEAT_TAKEN, NOT_ENOUGH_SEATS and SEAT_LIMIT are the answers of a
// rush, never failures; a 201 must hold exactly what was asked at its grades' prices.

import * as k6 from '../lib/common.js';

const SEATS = 50;
const GRADES = [
  { name: 'VIP', price: 3000, share: 0.2 },
  { name: 'R', price: 2000, share: 0.3 },
  { name: 'S', price: 1000, share: 0.5 },
];
const MAX_SEATS_PER_FAN = 4;
const RELEASE_SHARE = Number(__ENV.RELEASE_SHARE || 0.3);
const V1_SHARE = Number(__ENV.V1_SHARE || 0.1);
// Seats are contested, and a fan may ask past its limit: these answers are outcomes.
const BY_NUMBER = ['SEAT_TAKEN', 'SEAT_LIMIT'];
// By grade: NOT_ENOUGH_SEATS when the grade is gone; SEAT_TAKEN if the free seats it
// found were taken by a concurrent order before it could lock them.
const BY_GRADE = ['NOT_ENOUGH_SEATS', 'SEAT_TAKEN', 'SEAT_LIMIT'];
const STAGES = [
  { duration: '20s', target: 20 },
  { duration: '30s', target: 50 },
  { duration: '1m', target: 50 },
  { duration: '20s', target: 0 },
];

export const options = k6.options('reservation_stress', k6.executor('fightForSeats', STAGES),
  ['join', 'order', 'order_release'].concat(V1_SHARE > 0 ? ['hold'] : []));

export function setup() {
  return k6.seedConcert('Reservation Stress', [SEATS], GRADES, { maxSeatsPerFan: MAX_SEATS_PER_FAN });
}

let token = null; // per VU
let held = []; // per VU: the orders it holds ({ id } is all a release needs)

function randomInt(n) {
  return Math.floor(Math.random() * n);
}

export async function fightForSeats(data) {
  if (!token) {
    const ticket = await k6.join(data.concertId, k6.userId('stress'));
    token = ticket && k6.admitted(ticket);
    if (!token) return k6.think(1);
  }
  const schedule = data.scheduleIds[0];
  const grades = data.grades[0];
  let status;
  if (held.length > 0 && Math.random() < RELEASE_SHARE) {
    const i = randomInt(held.length);
    k6.releaseOrder(token, held[i]);
    held.splice(i, 1);
  } else if (Math.random() < V1_SHARE) {
    const seatNo = 1 + randomInt(SEATS);
    const r = k6.hold(token, schedule, seatNo, k6.gradeOf(grades, seatNo).price, BY_NUMBER);
    status = r.status;
    if (r.reservation) held.push({ id: r.reservation.orderId });
  } else {
    const size = 1 + randomInt(4);
    let choice;
    if (Math.random() < 0.5) {
      const first = 1 + randomInt(SEATS - size + 1);
      choice = { seats: Array.from({ length: size }, (_, i) => first + i) };
    } else {
      choice = { grade: grades[randomInt(grades.length)].name, quantity: size };
    }
    const r = k6.order(token, schedule, choice, grades, choice.seats ? BY_NUMBER : BY_GRADE);
    status = r.status;
    if (r.order) held.push(r.order);
  }
  if (status === 401) { // the token lapsed (long runs): join again; its holds lapse too
    token = null;
    held = [];
  }
  k6.think(1);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, [SEATS], data.grades);
}
