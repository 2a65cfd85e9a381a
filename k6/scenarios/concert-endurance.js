// Scenario 4, Concert Endurance: the lookups a crowd makes while it waits.
//
//   k6 run [-e BASE_URL=...] [-e PROFILE=...] k6/scenarios/concert-endurance.js
//
// report profile: 20 s -> 50 VUs, 2 min at 50, 20 s -> 0. Each iteration reads the
// concert list, the concert's schedules and one schedule's seat map, then thinks for
// 1 s. The cache hit rate over the run comes from the app's own metrics
// (boxoffice_cache_requests_total) and must stay above 90%.

import http from 'k6/http';
import { Gauge } from 'k6/metrics';
import * as k6 from '../lib/common.js';

const SEATS = [50, 50, 50];
const STAGES = [
  { duration: '20s', target: 50 },
  { duration: '2m', target: 50 },
  { duration: '20s', target: 0 },
];

export const options = k6.options('concert_endurance', k6.executor('browse', STAGES),
  ['concerts', 'schedules', 'seats']);
options.thresholds.cache_hit_rate = ['value>0.9'];

const cacheHitRate = new Gauge('cache_hit_rate');

function cacheReads() {
  const samples = k6.scrape();
  const count = (result) => Object.entries(samples)
    .filter(([series]) => series.startsWith('boxoffice_cache_requests_total{')
      && !series.includes('cache="invalidate"') && series.includes(`result="${result}"`))
    .reduce((sum, [, value]) => sum + value, 0);
  return { hits: count('hit'), misses: count('miss'), errors: count('error') };
}

export function setup() {
  const seeded = k6.seedConcert('Concert Endurance', SEATS, 1000);
  return Object.assign(seeded, { cacheBefore: cacheReads() });
}

export function browse(data) {
  const list = k6.record('concerts', http.get(`${k6.BASE}/v1/concerts`, { tags: { name: 'concerts' } }),
    (r, b) => r.status === 200 && b && Array.isArray(b.concerts) && b.concerts.some((c) => c.id === data.concertId));
  const schedules = k6.record('schedules',
    http.get(`${k6.BASE}/v1/concerts/${data.concertId}/schedules`, { tags: { name: 'schedules' } }),
    (r, b) => r.status === 200 && b && Array.isArray(b.schedules) && b.schedules.length === SEATS.length);
  if (list && schedules) {
    const i = Math.floor(Math.random() * SEATS.length);
    k6.record('seats', http.get(`${k6.BASE}/v1/schedules/${data.scheduleIds[i]}/seats`, { tags: { name: 'seats' } }),
      (r, b) => r.status === 200 && b && b.scheduleId === data.scheduleIds[i] && Array.isArray(b.seats)
        && b.seats.length === SEATS[i]);
  }
  k6.think(1);
}

export function teardown(data) {
  k6.checkSeatMaps(data.scheduleIds, SEATS);
  const after = cacheReads();
  const hits = after.hits - data.cacheBefore.hits;
  const reads = hits + (after.misses - data.cacheBefore.misses) + (after.errors - data.cacheBefore.errors);
  const rate = reads > 0 ? hits / reads : 0;
  cacheHitRate.add(rate);
  console.log(`cache: ${hits} hits of ${reads} lookups (${(rate * 100).toFixed(2)}%), from the app's metrics`);
}
