// Per-version metrics through the real platform (process driver, SQLite and PostgreSQL): what
// invocations and endpoint requests count, per version; errors, timeouts and crashes; two serving
// processes' rows adding up; idempotent, bounded flushing; GET …/metrics and its errors; retention;
// and the `containerpub metrics` command.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild } from './support/flows.ts';
import { client } from './support/http.ts';
import { waitFor } from './support/services.ts';
import { cliEnv, newHome, runCli } from './support/cli.ts';
import { createLogger } from '../shared/logger.ts';
import { MetricsRecorder, deploymentTotals, windowFigures, type MetricSample } from '../shared/domain/metrics.ts';
import { runCleanup } from '../shared/domain/retention.ts';

const t = await startTestPlatform({ METRICS_FLUSH_MS: '100', FUNCTION_TIMEOUT_MS: '1500', FUNCTION_IDLE_MS: '60000' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db;

/** An event handler: sleeps, throws, crashes or hangs on demand. */
const worker = (tag: string) =>
  makeNodeFunction(`export default async (event) => {
  if (event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  if (event.fail) throw new Error('failing on purpose');
  if (event.crash) { console.error('crashing on purpose'); process.exit(9); }
  if (event.hang) return new Promise(() => {});
  return { tag: ${JSON.stringify(tag)} };
};`);

/** An HTTP handler answering with the status its query asks for. */
const STATUS_FN = `export default {
  async fetch(request) {
    const code = Number(new URL(request.url).searchParams.get('code') ?? 200);
    return new Response('status ' + code, { status: code });
  },
};`;

type UserApi = Awaited<ReturnType<TestPlatform['newUser']>>;

/** GET …/metrics once every version listed has at least the requests given (figures are flushed every 100 ms). */
async function metricsWhen(api: UserApi, functionId: string, want: Record<number, number>, query = '') {
  return waitFor(
    `metrics showing ${JSON.stringify(want)}`,
    async () => {
      const res = await api.get(`/api/functions/${functionId}/metrics${query}`);
      assert.is(res.status, 200, JSON.stringify(res.body));
      const ok = Object.entries(want).every(([v, n]) => res.body.versions.find((x: any) => x.version === Number(v))?.totals.requests >= n);
      return ok ? res.body : undefined;
    },
    { timeoutMs: 10_000 },
  );
}

const silent = createLogger('silent');

// ---------------------------------------------------------------------------------------------
const counting = suite('metrics: what is counted');

counting('invocations of two versions are counted per version, with latency and the per-minute series', async () => {
  const api = await tp.newUser();
  const v1 = await deployAndBuild(api, 'two', await worker('v1'));
  const v2 = await deployAndBuild(api, 'two', await worker('v2'));
  for (let i = 0; i < 5; i++) assert.is((await api.post(`/api/functions/${v1.id}/invoke`, {})).status, 200);
  for (let i = 0; i < 3; i++) {
    const res = await api.post(`/api/functions/${v1.id}/invoke?version=1`, { sleep: 120 });
    assert.is(res.status, 200);
    assert.is(res.body.version, 1);
  }
  const body = await metricsWhen(api, v1.id, { 1: 3, 2: 5 });
  assert.is(body.minutes, 60);
  assert.equal(body.versions.map((v: any) => [v.version, v.deploymentId, v.totals.requests]), [
    [2, v2.built.id, 5],
    [1, v1.built.id, 3],
  ]);
  const [two, one] = body.versions;
  assert.equal(Object.keys(one.totals).sort(), ['avgMs', 'crashes', 'errorRate', 'errors', 'p50Ms', 'p99Ms', 'requests', 'timeouts']);
  assert.equal([one.totals.errors, one.totals.timeouts, one.totals.crashes, one.totals.errorRate], [0, 0, 0, 0]);
  assert.ok(one.totals.avgMs >= 120, `v1 slept 120 ms each time: avg ${one.totals.avgMs}`);
  assert.ok(one.totals.p50Ms >= 100, `v1 p50 ${one.totals.p50Ms}`);
  assert.ok(two.totals.p50Ms < one.totals.p50Ms, `v2 is faster: ${two.totals.p50Ms} < ${one.totals.p50Ms}`);
  for (const v of body.versions) {
    // a series point per minute that had invocations; they add up to the totals
    assert.ok(v.series.length >= 1 && v.series.length <= 2, JSON.stringify(v.series));
    assert.is(v.series.reduce((n: number, m: any) => n + m.requests, 0), v.totals.requests);
    for (const m of v.series) {
      assert.match(m.minute, /^\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z$/);
      assert.equal(Object.keys(m).sort(), ['crashes', 'errors', 'minute', 'p50Ms', 'p99Ms', 'requests', 'timeouts']);
    }
  }
  // ?version narrows to one version
  const only = await api.get(`/api/functions/${v1.id}/metrics?version=1&minutes=5`);
  assert.is(only.status, 200);
  assert.is(only.body.minutes, 5);
  assert.equal(only.body.versions.map((v: any) => [v.version, v.totals.requests]), [[1, 3]]);
});

counting('errors: a throw, a crash and a timeout are errors, each kind counted; the error rate follows', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'errs', await worker('v1'));
  const call = (event: object) => api.post(`/api/functions/${d.id}/invoke`, event);
  assert.is((await call({})).status, 200);
  assert.is((await call({})).status, 200);
  assert.is((await call({ fail: true })).status, 502);
  assert.is((await call({ crash: true })).status, 502);
  assert.is((await call({ hang: true })).status, 504);
  const body = await metricsWhen(api, d.id, { 1: 5 });
  const { totals } = body.versions[0];
  assert.equal(
    [totals.requests, totals.errors, totals.timeouts, totals.crashes, totals.errorRate],
    [5, 3, 1, 1, 0.6],
    JSON.stringify(totals),
  );
  assert.ok(totals.p99Ms >= 1_000, `the timeout (1.5 s) is in the latencies: p99 ${totals.p99Ms}`);
});

counting("an endpoint's own 5xx answer counts as an error; a 4xx does not", async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'statuses', await makeNodeFunction(STATUS_FN));
  const fnPath = new URL((await api.get(`/api/functions/${d.id}`)).body.url).pathname;
  const hit = async (code: number) => {
    const res = await fetch(`${tp.url}${fnPath}/?code=${code}`, { headers: { authorization: `Bearer ${api.token}` } });
    await res.arrayBuffer();
    assert.is(res.status, code);
  };
  await hit(200);
  await hit(200);
  await hit(404);
  await hit(500);
  await hit(503);
  const body = await metricsWhen(api, d.id, { 1: 5 });
  const { totals } = body.versions[0];
  assert.equal([totals.requests, totals.errors, totals.timeouts, totals.crashes, totals.errorRate], [5, 2, 0, 0, 0.4]);
});

counting("two serving processes write their own rows; the figures are their sum", async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'replicated', await worker('v1'));
  const replica = await tp.replica();
  try {
    const other = client(replica.url, api.token);
    for (let i = 0; i < 3; i++) assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
    for (let i = 0; i < 2; i++) assert.is((await other.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
    const body = await metricsWhen(api, d.id, { 1: 5 });
    assert.is(body.versions[0].totals.requests, 5);
    assert.is.not(replica.invoker.metrics.source, tp.invoker.metrics.source);
    const sources = await db.knex('function_metrics').where({ deployment_id: d.built.id }).distinct('source');
    assert.equal(sources.map((r: any) => r.source).sort(), [tp.invoker.metrics.source, replica.invoker.metrics.source].sort());
  } finally {
    await replica.close();
  }
});

// ---------------------------------------------------------------------------------------------
const recorder = suite('metrics: the recorder');

let fn: { id: string; deploymentId: string };
recorder.before(async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'recorded', await worker('v1'));
  fn = { id: d.id, deploymentId: d.built.id };
});

const sample = (extra: Partial<MetricSample> = {}): MetricSample => ({
  functionId: fn.id,
  deploymentId: fn.deploymentId,
  version: 1,
  outcome: 'ok',
  status: 200,
  durationMs: 20,
  ...extra,
});

recorder('rows hold cumulative counts: flushing again, or after more samples, never counts twice or overwrites', async () => {
  const a = new MetricsRecorder(db, silent, { flushMs: 60_000, source: 'test-a' });
  const b = new MetricsRecorder(db, silent, { flushMs: 60_000, source: 'test-b' });
  const past = Date.parse('2026-01-01T10:00:30Z');
  const totals = async (since?: string) => windowFigures(await deploymentTotals(db.knex, fn.deploymentId, since), null);
  a.record(sample(), past);
  a.record(sample({ outcome: 'error', status: 502, durationMs: 700 }), past);
  b.record(sample({ outcome: 'timeout', status: 504, durationMs: 1_500 }), past);
  await a.flush();
  await a.flush();
  await b.flush();
  let w = await totals();
  assert.equal([w.requests, w.errors, w.timeouts], [3, 2, 1]);
  // stamped in a minute already written and let go (a clock stepped back): counted in a later
  // minute rather than overwriting that minute's row with a smaller count
  a.record(sample(), past + 10_000);
  await a.flush();
  const pastRows = await db.knex('function_metrics').where({ deployment_id: fn.deploymentId, minute: '2026-01-01T10:00:00.000Z' }).orderBy('source');
  assert.equal(pastRows.map((r: any) => [r.source, Number(r.requests)]), [['test-a', 2], ['test-b', 1]]);
  // the current minute's row is rewritten with the process's running count at each flush
  a.record(sample());
  await a.flush();
  a.record(sample());
  await a.flush();
  w = await totals();
  assert.equal([w.requests, w.errors, w.timeouts], [6, 2, 1]);
  const aRows = await db.knex('function_metrics').where({ deployment_id: fn.deploymentId, source: 'test-a' });
  assert.is(aRows.reduce((n: number, r: any) => n + Number(r.requests), 0), 5);
  // `since` counts from the start of its minute on
  assert.is((await totals('2026-01-01T10:00:45.000Z')).requests, 6);
  assert.is((await totals('2026-01-01T10:01:00.000Z')).requests, 3);
  await a.close();
  await b.close();
});

recorder('bounded memory: past the bucket limit samples are dropped and counted in a warning', async () => {
  const lines: string[] = [];
  const logger = createLogger('warn', {}, (line) => lines.push(line));
  const r = new MetricsRecorder(db, logger, { flushMs: 60_000, source: 'test-bounded', maxBuckets: 2 });
  const base = Date.parse('2026-01-02T00:00:00Z');
  for (let m = 0; m < 5; m++) r.record(sample(), base + m * 60_000);
  await r.close();
  const rows = await db.knex('function_metrics').where({ source: 'test-bounded' });
  assert.is(rows.length, 2, 'two minutes kept');
  const warning = lines.map((l) => JSON.parse(l)).find((l) => /not counted/.test(l.msg));
  assert.ok(warning, lines.join('\n'));
  assert.is(warning.dropped, 3);
});

recorder("a version deleted before its figures were written costs only its own rows; close() flushes", async () => {
  const api = await tp.newUser();
  const gone = await deployAndBuild(api, 'doomed', await worker('v1'));
  const r = new MetricsRecorder(db, silent, { flushMs: 60_000, source: 'test-deleted' });
  r.record(sample({ functionId: gone.id, deploymentId: gone.built.id }));
  r.record(sample());
  assert.is((await api.del(`/api/functions/${gone.id}`)).status, 204);
  await r.close();
  const rows = await db.knex('function_metrics').where({ source: 'test-deleted' });
  assert.equal(rows.map((x: any) => x.deployment_id), [fn.deploymentId]);
});

recorder('retention prunes minutes older than METRICS_RETENTION_DAYS and keeps the rest', async () => {
  const r = new MetricsRecorder(db, silent, { flushMs: 60_000, source: 'test-retention' });
  r.record(sample(), Date.now() - 20 * 24 * 3600_000);
  r.record(sample(), Date.now() - 10 * 24 * 3600_000);
  r.record(sample());
  await r.close();
  const summary = await runCleanup(tp.platform, tp.driver, { functionName: 'no-function-is-called-this' });
  assert.is(summary.errors, 0);
  assert.ok(summary.metricsPruned >= 1, JSON.stringify(summary));
  const left = await db.knex('function_metrics').where({ source: 'test-retention' });
  assert.is(left.length, 2, 'the 10-day-old and the current minute stay (14 days by default)');
});

// ---------------------------------------------------------------------------------------------
const route = suite('metrics: GET …/metrics');

route("another user's function is a 404; bad queries are 400s naming the field; an unknown version is a 404", async () => {
  const owner = await tp.newUser();
  const d = await deployAndBuild(owner, 'private-metrics', await worker('v1'));
  const other = await tp.newUser();
  const stranger = await other.get(`/api/functions/${d.id}/metrics`);
  assert.is(stranger.status, 404);
  assert.is(stranger.body.error.code, 'function_not_found');
  assert.is((await tp.http.get(`/api/functions/${d.id}/metrics`)).status, 401);
  for (const [query, field] of [
    ['minutes=0', 'minutes'],
    ['minutes=1441', 'minutes'],
    ['minutes=abc', 'minutes'],
    ['version=x', 'version'],
    ['version=-1', 'version'],
  ]) {
    const res = await owner.get(`/api/functions/${d.id}/metrics?${query}`);
    assert.is(res.status, 400, query);
    assert.is(res.body.error.code, 'validation_failed', query);
    assert.match(res.body.error.message, new RegExp(`^${field}: `), query);
  }
  const unknown = await owner.get(`/api/functions/${d.id}/metrics?version=9`);
  assert.is(unknown.status, 404);
  assert.is(unknown.body.error.code, 'version_not_found');
  // a version that ran nothing: listed when asked for, with zero figures; otherwise left out
  const idle = await owner.get(`/api/functions/${d.id}/metrics?version=1&minutes=1440`);
  assert.is(idle.status, 200);
  assert.equal(idle.body, {
    minutes: 1440,
    versions: [
      {
        version: 1,
        deploymentId: d.built.id,
        totals: { requests: 0, errors: 0, timeouts: 0, crashes: 0, errorRate: 0, p50Ms: null, p99Ms: null, avgMs: null },
        series: [],
      },
    ],
  });
  assert.equal((await owner.get(`/api/functions/${d.id}/metrics`)).body, { minutes: 60, versions: [] });
});

// ---------------------------------------------------------------------------------------------
const cli = suite('metrics: the CLI');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-metrics-cli-'));

cli('metrics <name> prints a row per version; --version adds its minutes; --json is the API answer; bad flags exit 2', async () => {
  const user = await tp.newUser();
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: user.token });
  const run = (...args: string[]) => runCli(args, env);
  const d = await deployAndBuild(user, 'charted', await worker('v1'));
  await deployAndBuild(user, 'charted', await worker('v2'));

  const empty = await run('metrics', 'charted');
  assert.is(empty.code, 0, empty.stderr);
  assert.match(empty.stdout, /no invocations of charted in the last 60 minutes/);

  for (let i = 0; i < 4; i++) assert.is((await user.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
  assert.is((await user.post(`/api/functions/${d.id}/invoke?version=1`, { fail: true })).status, 502);
  await metricsWhen(user, d.id, { 1: 1, 2: 4 });

  const shown = await run('metrics', 'charted');
  assert.is(shown.code, 0, shown.stderr);
  const lines = shown.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^charted, the last 60 minutes:$/);
  assert.match(lines[1]!, /^VERSION\s+REQUESTS\s+ERRORS\s+ERROR RATE\s+TIMEOUTS\s+CRASHES\s+P50\s+P99\s+AVG$/);
  assert.match(lines[2]!, /^v2\s+4\s+0\s+0%\s+0\s+0\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+ ms$/);
  assert.match(lines[3]!, /^v1\s+1\s+1\s+100%\s+0\s+0\s/);

  const one = await run('metrics', 'charted', '--version', '1', '--minutes', '30');
  assert.is(one.code, 0, one.stderr);
  assert.match(one.stdout, /^charted, the last 30 minutes:\n/);
  assert.not.match(one.stdout, /^v2/m);
  assert.match(one.stdout, /MINUTE \(UTC\)\s+REQUESTS\s+ERRORS\s+TIMEOUTS\s+CRASHES\s+P50\s+P99\n\d{4}-\d\d-\d\d \d\d:\d\d\s+1\s+1\s+0\s+0\s/);

  const json = await run('metrics', 'charted', '--json');
  assert.is(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.versions.map((v: any) => [v.version, v.totals.requests, v.totals.errors]), [[2, 4, 0], [1, 1, 1]]);

  for (const args of [['--minutes', '0'], ['--minutes', '1441'], ['--version', 'x']]) {
    const bad = await run('metrics', 'charted', ...args);
    assert.is(bad.code, 2, `${args.join(' ')}: ${bad.stderr}`);
    assert.match(bad.stderr, /^error: --(minutes|version) must be/);
  }
  const missing = await run('metrics', 'nope');
  assert.is(missing.code, 1);
  assert.match(missing.stderr, /no function named "nope"/);
});

cli.after(async () => {
  fs.rmSync(scratch, { recursive: true, force: true });
  await tp.close();
});

counting.run();
recorder.run();
route.run();
cli.run();
