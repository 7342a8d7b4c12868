// The pure parts of per-version metrics: the latency histogram's buckets, quantiles read from it,
// what counts as an error, and a window as the difference of two cumulative totals.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  LATENCY_BOUNDS_MS,
  emptyTotals,
  isError,
  latencyBucket,
  minuteOf,
  quantileMs,
  windowFigures,
  type Totals,
} from '../../shared/domain/metrics.ts';

/** A histogram holding these durations. */
function histogram(durations: number[]): number[] {
  const h = new Array<number>(LATENCY_BOUNDS_MS.length).fill(0);
  for (const d of durations) h[latencyBucket(d)]!++;
  return h;
}

function totals(durations: number[], extra: Partial<Totals> = {}): Totals {
  return {
    ...emptyTotals(),
    requests: durations.length,
    durationSumMs: durations.reduce((a, b) => a + b, 0),
    latency: histogram(durations),
    ...extra,
  };
}

test('the buckets: 20–25 ascending bounds from 1 ms to 15 min, then Infinity, at most 3× apart', () => {
  const finite = LATENCY_BOUNDS_MS.slice(0, -1);
  assert.ok(finite.length >= 20 && finite.length <= 25, `${finite.length} finite buckets`);
  assert.is(finite[0], 1);
  assert.is(finite.at(-1), 15 * 60_000);
  assert.is(LATENCY_BOUNDS_MS.at(-1), Infinity);
  for (let i = 1; i < finite.length; i++) {
    assert.ok(finite[i]! > finite[i - 1]!, `ascending at ${i}`);
    assert.ok(finite[i]! / finite[i - 1]! <= 3, `${finite[i - 1]} → ${finite[i]} is a log-spaced step`);
  }
  assert.ok(Object.isFrozen(LATENCY_BOUNDS_MS), 'stored rows depend on them: not changeable at run time');
});

test('a duration falls in the first bucket whose upper bound holds it; odd values in the first', () => {
  assert.is(latencyBucket(0), 0);
  assert.is(latencyBucket(1), 0, 'bounds are inclusive');
  assert.is(latencyBucket(1.01), 1);
  assert.is(latencyBucket(100), LATENCY_BOUNDS_MS.indexOf(100));
  assert.is(latencyBucket(101), LATENCY_BOUNDS_MS.indexOf(100) + 1);
  assert.is(latencyBucket(15 * 60_000), LATENCY_BOUNDS_MS.length - 2);
  assert.is(latencyBucket(16 * 60_000), LATENCY_BOUNDS_MS.length - 1, 'past 15 min: the open bucket');
  assert.is(latencyBucket(-5), 0);
  assert.is(latencyBucket(Number.NaN), 0);
  for (let d = 0; d < 2_000_000; d += 997) {
    const i = latencyBucket(d);
    assert.ok(d <= LATENCY_BOUNDS_MS[i]! && (i === 0 || d > LATENCY_BOUNDS_MS[i - 1]!), `${d} ms in bucket ${i}`);
  }
});

test('quantiles: null without samples; interpolated inside the bucket; the tail decides p99', () => {
  assert.is(quantileMs(histogram([]), 0.5), null);
  // 100 samples of 30 ms: all in (25, 50]; p50 halfway through it
  const flat = histogram(new Array(100).fill(30));
  assert.is(quantileMs(flat, 0.5), 37.5);
  const p99 = quantileMs(flat, 0.99)!;
  assert.ok(p99 > 25 && p99 <= 50, `p99 ${p99} in (25, 50]`);
  // 98 fast and 2 slow: the median is fast, p99 lands among the slow ones
  const tail = histogram([...new Array(98).fill(10), 2_000, 2_000]);
  const p50 = quantileMs(tail, 0.5)!;
  assert.ok(p50 > 8 && p50 <= 15, `p50 ${p50} in (8, 15]`);
  const slow = quantileMs(tail, 0.99)!;
  assert.ok(slow > 1_500 && slow <= 2_500, `p99 ${slow} in (1500, 2500]`);
  // with exactly 1 % slow, p99 is still the last fast one's bucket
  const edge = histogram([...new Array(99).fill(10), 2_000]);
  assert.ok(quantileMs(edge, 0.99)! <= 15);
  assert.ok(quantileMs(edge, 1)! > 1_500);
  // past 15 min: the open bucket reports its lower bound rather than Infinity
  assert.is(quantileMs(histogram([20 * 60_000]), 0.99), 15 * 60_000);
  // quantiles never decrease with q
  const mixed = histogram([1, 3, 7, 40, 80, 120, 300, 700, 5_000, 70_000]);
  let last = 0;
  for (let q = 0; q <= 1; q += 0.05) {
    const v = quantileMs(mixed, q)!;
    assert.ok(v >= last, `q=${q.toFixed(2)}: ${v} ≥ ${last}`);
    last = v;
  }
});

test('errors: error, timeout and crashed outcomes, and any 5xx answer; aborted and 4xx are not', () => {
  assert.ok(isError({ outcome: 'error' }));
  assert.ok(isError({ outcome: 'timeout', status: 504 }));
  assert.ok(isError({ outcome: 'crashed' }));
  assert.ok(isError({ outcome: 'ok', status: 500 }), "a function's own 500");
  assert.ok(isError({ outcome: 'ok', status: 503 }));
  assert.not.ok(isError({ outcome: 'ok', status: 200 }));
  assert.not.ok(isError({ outcome: 'ok', status: 404 }));
  assert.not.ok(isError({ outcome: 'aborted', status: 200 }), 'the caller left: not the version’s fault');
  assert.not.ok(isError({ outcome: 'ok' }));
});

test('a window is now minus the baseline: counts, error rate and the quantiles of what came after', () => {
  const baseline = totals([...new Array(50).fill(10)], { errors: 5, timeouts: 1, crashes: 2 });
  // afterwards: 50 more, all slow, 25 of them errors
  const now = totals([...new Array(50).fill(10), ...new Array(50).fill(2_000)], { errors: 30, timeouts: 4, crashes: 2 });
  const w = windowFigures(now, baseline);
  assert.is(w.requests, 50);
  assert.is(w.errors, 25);
  assert.is(w.errorRate, 0.5);
  assert.is(w.timeouts, 3);
  assert.is(w.crashes, 0);
  assert.ok(w.p50Ms! > 1_500 && w.p50Ms! <= 2_500, 'the fast requests before the baseline do not count');
  assert.ok(w.p99Ms! > 1_500 && w.p99Ms! <= 2_500);

  const whole = windowFigures(now, null);
  assert.is(whole.requests, 100);
  assert.is(whole.errorRate, 0.3);
  assert.ok(whole.p50Ms! <= 15, 'without a baseline: everything');

  const idle = windowFigures(baseline, baseline);
  assert.equal(idle, { requests: 0, errors: 0, timeouts: 0, crashes: 0, errorRate: 0, p50Ms: null, p99Ms: null });
  // a baseline above the later read (its minutes pruned meanwhile) gives nothing, never negatives
  const pruned = windowFigures(emptyTotals(), baseline);
  assert.is(pruned.requests, 0);
  assert.is(pruned.errors, 0);
  assert.is(pruned.errorRate, 0);
});

test('minutes are UTC minute starts', () => {
  const t = Date.parse('2026-03-04T05:06:59.999Z');
  assert.is(new Date(minuteOf(t)).toISOString(), '2026-03-04T05:06:00.000Z');
  assert.is(minuteOf(minuteOf(t)), minuteOf(t));
});

test.run();
