// The canary's decision rule (judgeWindow) on its own: when a window advances, waits or rolls back,
// and that a rollback carries the numbers. The controller around it is tests/canary.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { canaryRequestSchema, judgeWindow, type CanaryLimits } from '../../shared/domain/canary.ts';
import type { WindowFigures } from '../../shared/domain/metrics.ts';

const limits: CanaryLimits = { maxErrorRate: 0.05, maxP99Ms: null, minRequests: 20 };
const w = (requests: number, errors: number, extra: Partial<WindowFigures> = {}): WindowFigures => ({
  requests,
  errors,
  timeouts: 0,
  crashes: 0,
  errorRate: requests > 0 ? errors / requests : 0,
  p50Ms: requests > 0 ? 5 : null,
  p99Ms: requests > 0 ? 10 : null,
  ...extra,
});

test('within the limits with minRequests: advances only once the interval is over', () => {
  assert.equal(judgeWindow(limits, w(20, 1), true), { kind: 'advance' });
  assert.equal(judgeWindow(limits, w(200, 0), false), { kind: 'none' });
});

test('too few requests: waits at the end of the interval, never advances', () => {
  assert.equal(judgeWindow(limits, w(0, 0), true), { kind: 'wait' });
  assert.equal(judgeWindow(limits, w(19, 0), true), { kind: 'wait' });
  assert.equal(judgeWindow(limits, w(19, 0), false), { kind: 'none' });
});

test('one error out of a few requests is not evidence yet; errors that make the threshold certain are', () => {
  // 1 error in 3 requests (33 %): with 17 good answers to come the 20-request window would be 5 %
  assert.equal(judgeWindow(limits, w(3, 1), true), { kind: 'wait' });
  // 2 errors: over 5 % of 20 whatever the next 17 answers are
  const v = judgeWindow(limits, w(4, 2), false);
  assert.is(v.kind, 'rollback');
  assert.match((v as { why: string }).why, /error rate 50\.0 % \(2 errors in 4 requests; 0 timeouts, 0 crashes\) is over maxErrorRate 5\.0 %/);
});

test('over the error rate with minRequests rolls back at once, before the interval is over', () => {
  const v = judgeWindow(limits, w(40, 20, { timeouts: 3, crashes: 1 }), false);
  assert.is(v.kind, 'rollback');
  assert.match((v as { why: string }).why, /20 errors in 40 requests; 3 timeouts, 1 crashes/);
  // exactly at the limit is within it
  assert.equal(judgeWindow(limits, w(40, 2), true), { kind: 'advance' });
});

test('maxErrorRate 0: the first error rolls back', () => {
  assert.is(judgeWindow({ ...limits, maxErrorRate: 0 }, w(1, 1), false).kind, 'rollback');
});

test('p99 over maxP99Ms rolls back, judged only with minRequests', () => {
  const slow = { ...limits, maxP99Ms: 300 };
  assert.equal(judgeWindow(slow, w(5, 0, { p99Ms: 2000 }), true), { kind: 'wait' });
  const v = judgeWindow(slow, w(20, 0, { p99Ms: 450 }), false);
  assert.is(v.kind, 'rollback');
  assert.match((v as { why: string }).why, /p99 450 ms over 20 requests is over maxP99Ms 300 ms/);
  assert.equal(judgeWindow(slow, w(20, 0, { p99Ms: 300 }), true), { kind: 'advance' });
});

test('the request schema: defaults, and steps strictly ascending within 1..100', () => {
  assert.equal(canaryRequestSchema.parse({ version: 2 }), {
    version: 2,
    steps: [5, 25, 50, 100],
    intervalSeconds: 60,
    maxErrorRate: 0.05,
    minRequests: 20,
  });
  for (const steps of [[], [50, 25], [5, 5], [0, 50], [5, 101], [2.5]]) {
    assert.is(canaryRequestSchema.safeParse({ version: 2, steps }).success, false, JSON.stringify(steps));
  }
  assert.is(canaryRequestSchema.safeParse({ version: 2, steps: [100] }).success, true);
  assert.is(canaryRequestSchema.safeParse({ version: 2, colour: 'red' }).success, false);
});

test.run();
