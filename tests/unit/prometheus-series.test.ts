// The invocation series a process keeps in its Prometheus registry are bounded: a deleted
// function's go, and a function keeps those of its INVOCATION_VERSIONS_KEPT most recently invoked
// versions (every deploy adds a version; a long-running API would otherwise keep them all).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { INVOCATION_VERSIONS_KEPT, PlatformMetrics } from '../../shared/observability/metrics.ts';

/** The versions of `functionId` that have series of `name` in the exposition. */
async function versionsIn(m: PlatformMetrics, name: string, functionId: string): Promise<string[]> {
  const { body } = await m.exposition();
  const versions = new Set<string>();
  for (const line of body.split('\n')) {
    if (!line.startsWith(`${name}{`) || !line.includes(`function_id="${functionId}"`)) continue;
    versions.add(/version="([^"]+)"/.exec(line)![1]!);
  }
  return [...versions].sort((a, b) => Number(a) - Number(b));
}

const invoke = (m: PlatformMetrics, functionId: string, version: number, outcome = 'ok') => m.observeInvocation({ functionId, version, outcome, durationMs: 3 });
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

test(`a function keeps the series of its ${INVOCATION_VERSIONS_KEPT} most recently invoked versions`, async () => {
  const m = new PlatformMetrics();
  const kept = INVOCATION_VERSIONS_KEPT;
  for (let v = 1; v <= kept; v++) invoke(m, 'f1', v, v % 2 ? 'ok' : 'error');
  assert.equal(await versionsIn(m, 'containerpub_invocations_total', 'f1'), range(1, kept));
  // v1 invoked again is the most recent; the next new version pushes out v2, the least recent
  invoke(m, 'f1', 1);
  invoke(m, 'f1', kept + 1);
  assert.equal(await versionsIn(m, 'containerpub_invocations_total', 'f1'), ['1', ...range(3, kept + 1)]);
  // v2's error series went too, and its latency histogram with them
  assert.equal(await versionsIn(m, 'containerpub_invocation_duration_seconds_count', 'f1'), ['1', ...range(3, kept + 1)]);
  // a version dropped and invoked again starts its counts over
  invoke(m, 'f1', 2);
  const { body } = await m.exposition();
  assert.match(body, /containerpub_invocations_total\{function_id="f1",version="2",outcome="ok"\} 1\n/);
  assert.not.match(body, /version="2",outcome="error"/);
  assert.is((await versionsIn(m, 'containerpub_invocations_total', 'f1')).length, kept);
});

test('a deleted function loses its series; an invocation finishing after the delete does not bring them back; others are untouched', async () => {
  const m = new PlatformMetrics();
  for (let v = 1; v <= 3; v++) invoke(m, 'gone', v);
  invoke(m, 'stays', 1, 'timeout');
  m.forgetFunction('gone');
  assert.equal(await versionsIn(m, 'containerpub_invocations_total', 'gone'), []);
  assert.equal(await versionsIn(m, 'containerpub_invocation_duration_seconds_bucket', 'gone'), []);
  invoke(m, 'gone', 3);
  assert.equal(await versionsIn(m, 'containerpub_invocations_total', 'gone'), []);
  assert.equal(await versionsIn(m, 'containerpub_invocations_total', 'stays'), ['1']);
  // forgetting a function this process never served is harmless
  m.forgetFunction('never-seen');
  assert.equal(await versionsIn(m, 'containerpub_invocations_total', 'stays'), ['1']);
});

test('memory stays bounded over many versions of many functions', async () => {
  const m = new PlatformMetrics();
  for (let f = 0; f < 20; f++) for (let v = 1; v <= 100; v++) invoke(m, `fn${f}`, v);
  const { body } = await m.exposition();
  const series = body.split('\n').filter((l) => l.startsWith('containerpub_invocations_total{')).length;
  assert.is(series, 20 * INVOCATION_VERSIONS_KEPT);
});

test.run();
