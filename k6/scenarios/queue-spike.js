// Scenario 1, Queue Spike: a rush of fresh users joining one concert's waiting room.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=report|smoke|spike|endurance|capacity] k6/scenarios/queue-spike.js
//
// report profile: 10 s -> 20 VUs, 20 s -> 100 VUs, 30 s at 100, 10 s -> 0. Each
// iteration joins with a user never seen before, checks the answer carries a token and
// a place in line, and thinks for 1 s. Nobody leaves, so the line only grows. Against an
// app in jwt mode each join carries a fresh user's signed id token: pre-minted ones
// from ID_TOKEN_POOL while they last (k6/run mints them for the capacity and spike
// profiles), else minted by the VU (lib/identity.js).

import exec from 'k6/execution';
import * as k6 from '../lib/common.js';
import * as identity from '../lib/identity.js';

const STAGES = [
  { duration: '10s', target: 20 },
  { duration: '20s', target: 100 },
  { duration: '30s', target: 100 },
  { duration: '10s', target: 0 },
];

export const options = k6.options('queue_spike', k6.executor('joinFresh', STAGES), ['join']);

export function setup() {
  return k6.seedConcert('Queue Spike', [50], 1000);
}

export async function joinFresh(data) {
  await k6.join(data.concertId, k6.userId('spike', true), identity.pooled(exec.scenario.iterationInTest));
  k6.think(1);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, [50]);
}
