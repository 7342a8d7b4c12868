// Operability (issue 16, items 2, 3 and 7), on each database, over real HTTP: GET /metrics parses as
// Prometheus text and its counters move with a build, an invocation and a rollback; METRICS_TOKEN
// guards it; a runner alone serves its own metrics port; log lines are JSON carrying request ids
// (the runner's build lines too), errors keep their stacks, and no secret or token reaches a line;
// /readyz reports each dependency; GET /api/status shows the runners alive and the queue.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createLogger } from '../shared/logger.ts';
import { startRunnerService } from '../runner/service.ts';
import { runBuild } from '../runner/build-job.ts';
import { createDb } from '../shared/db/knex.ts';
import { withRequestId } from '../shared/observability/request-context.ts';
import { makeNodeFunction } from './support/archives.ts';
import { nodeArgsFor } from './support/bundle.ts';
import { declaration, waitForBuild } from './support/flows.ts';
import type { Client } from './support/http.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { createPgDatabase, dockerAvailable, testDbKind, waitFor } from './support/services.ts';
import Docker from 'dockerode';
import { createApi, serveApi } from '../api/server.ts';
import type { RuntimeDriver } from '../shared/runtime/types.ts';

const METRICS_TOKEN = `metrics-${randomBytes(12).toString('hex')}`;
const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
const root = path.resolve(import.meta.dirname, '..');

const lines: string[] = [];
const tp = (await startTestPlatform(
  { METRICS_TOKEN, LOG_LEVEL: 'debug' },
  { runner: true, logSink: (line) => lines.push(line) },
)) as TestPlatform;
if (!tp) process.exit(0);
const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, any>);

// A handler that sees its secret and prints it (its own output goes to the invocation's record),
// and throws on demand.
const HANDLER = `
export default async (event, context) => {
  console.log('token is', process.env.API_TOKEN);
  console.error('token again', process.env.API_TOKEN);
  if (event.fail) throw new Error('failing with ' + process.env.API_TOKEN);
  return { ok: true, version: context.version };
};`;

// ------------------------------------------------------------------------------- Prometheus text

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The text exposition format (0.0.4): every sample, checked to belong to a family with a TYPE. */
function parsePrometheus(text: string): Sample[] {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    assert.not.ok(line.startsWith('#'), `an unknown comment line: ${line}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.eE+-]+|[Nn][Aa][Nn]|[+-]?[Ii]nf)$/.exec(line);
    // values are Go floats to Prometheus: NaN and Inf in any case (prom-client writes "Nan")
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    if (m![2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
      let l: RegExpExecArray | null;
      let consumed = 0;
      while ((l = re.exec(m![2]))) {
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        consumed = re.lastIndex;
      }
      assert.is(consumed, m![2].length, `bad labels: ${line}`);
    }
    const name = m![1]!;
    const family = [name, name.replace(/_(bucket|sum|count|total|created)$/, '')].find((n) => types.has(n));
    assert.ok(family, `a sample without a TYPE: ${name}`);
    samples.push({ name, labels, value: Number(m![3]) });
  }
  return samples;
}

/** The sum of the samples of `name` whose labels include `labels`. */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

async function scrape(url = tp.url, token: string | null = METRICS_TOKEN): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  assert.is(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

// ------------------------------------------------------------------------------------ flows

/** POST /deploy (JSON, with a secret) → PUT → complete, with `requestId` as the deploy's X-Request-Id. */
async function deploy(api: Client, name: string, archive: Buffer, requestId: string) {
  const res = await api.post(
    '/api/functions/deploy',
    { name, ...declaration(archive), config: { secrets: { API_TOKEN: SECRET } } },
    { headers: { 'x-request-id': requestId } },
  );
  assert.is(res.status, 201, JSON.stringify(res.body));
  assert.is(res.headers.get('x-request-id'), requestId);
  const put = await fetch(res.body.upload.url, { method: res.body.upload.method, headers: res.body.upload.headers, body: archive });
  assert.is(put.status, 200);
  const complete = await api.post(`/api/functions/${res.body.id}/deployments/${res.body.version}/complete`);
  assert.is(complete.status, 202, JSON.stringify(complete.body));
  return { id: res.body.id as string, version: res.body.version as number, uploadUrl: res.body.upload.url as string };
}

// ---------------------------------------------------------------------------------- metrics
const metrics = suite('metrics');
let user: Client & { userId: string; token: string };
let fnId = '';
let uploadUrl = '';
const DEPLOY_REQUEST = `deploy-${randomBytes(6).toString('hex')}`;

metrics('METRICS_TOKEN: 401 JSON without it or with a wrong one', async () => {
  for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: METRICS_TOKEN }] as Record<string, string>[]) {
    const res = await fetch(`${tp.url}/metrics`, { headers });
    assert.is(res.status, 401);
    const body = (await res.json()) as any;
    assert.is(body.error.code, 'unauthorized');
  }
});

metrics('a build, invocations, a rollback and an endpoint request move the counters; labels are templates', async () => {
  user = await tp.newUser();
  const before = await scrape();
  const archive = await makeNodeFunction(HANDLER);
  const d1 = await deploy(user, 'observed', archive, DEPLOY_REQUEST);
  fnId = d1.id;
  uploadUrl = d1.uploadUrl;
  assert.is((await waitForBuild(user, fnId, 1)).status, 'active');
  for (let i = 0; i < 2; i++) assert.is((await user.post(`/api/functions/${fnId}/invoke`, {})).status, 200);
  assert.is((await user.post(`/api/functions/${fnId}/invoke`, { fail: true })).status, 502);
  const d2 = await deploy(user, 'observed', archive, `deploy2-${randomBytes(4).toString('hex')}`);
  assert.is((await waitForBuild(user, fnId, d2.version)).status, 'active');
  assert.is((await user.post(`/api/functions/${fnId}/rollback`, { version: 1 })).status, 200);
  assert.is((await fetch(`${tp.url}/fn/nobody-here/nothing/some/path?x=1`)).status, 404);

  const after = await scrape();
  const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
  assert.is(delta('containerpub_builds_total', { outcome: 'succeeded' }), 2, 'two builds succeeded');
  assert.is(delta('containerpub_build_duration_seconds_count', { outcome: 'succeeded' }), 2);
  assert.ok(delta('containerpub_build_duration_seconds_sum', { outcome: 'succeeded' }) > 0);
  assert.is(delta('containerpub_invocations_total', { function_id: fnId, version: '1', outcome: 'ok' }), 2);
  assert.is(delta('containerpub_invocations_total', { function_id: fnId, version: '1', outcome: 'error' }), 1);
  assert.is(delta('containerpub_invocation_duration_seconds_count', { function_id: fnId, version: '1' }), 3);
  assert.is(delta('containerpub_invocation_duration_seconds_bucket', { function_id: fnId, version: '1', le: '+Inf' }), 3);
  assert.is(delta('containerpub_rollbacks_total', { kind: 'rollback', outcome: 'switched' }), 1);
  assert.is(delta('containerpub_activations_total', { reason: 'build' }), 2);
  assert.is(delta('containerpub_activations_total', { reason: 'rollback' }), 1);
  // each version's first instance is the one its readiness check started (the runner is in this
  // process), and v1's stayed warm for the rollback: no other start
  assert.is(delta('containerpub_instance_starts_total', { how: 'adopted', outcome: 'ready' }), 2);
  assert.is(delta('containerpub_instance_starts_total', { how: 'started', outcome: 'ready' }), 0);
  assert.is(delta('containerpub_http_requests_total', { method: 'POST', route: '/api/functions/:id/rollback', status: '200' }), 1);
  assert.is(delta('containerpub_http_requests_total', { method: 'POST', route: '/api/functions/:id/invoke', status: '502' }), 1);
  assert.is(delta('containerpub_http_requests_total', { method: 'GET', route: '/fn/*', status: '404' }), 1);
  assert.ok(delta('containerpub_http_request_duration_seconds_count', { route: '/api/functions/deploy' }) >= 2);
  // the instances of the rolled-back-to version and the new one are warm here
  assert.ok(valueOf(after, 'containerpub_instances') >= 1, 'instances by state');
  assert.ok(after.some((s) => s.name === 'containerpub_build_queue_depth'), 'queue depth');
  assert.ok(after.some((s) => s.name === 'containerpub_builds_running'), 'running builds');
  // the API's own queue for turns of its event loop (api/http/turns.ts): empty between requests
  assert.is(valueOf(after, 'containerpub_http_requests_waiting'), 0, 'requests waiting for a turn');
  // bounded labels: no route label holds an id, a name or a raw path
  const routes = new Set(after.filter((s) => s.labels.route !== undefined).map((s) => s.labels.route!));
  for (const r of routes) {
    assert.not.ok(r.includes(fnId) || r.includes('observed') || r.includes('nobody-here') || r.includes('?'), `route label ${r}`);
  }
  assert.ok(routes.has('/api/functions/:id/deployments/:version/complete'), [...routes].join(', '));
});

metrics('a deleted function\'s invocation series leave /metrics (a long-running API does not keep them)', async () => {
  const api = await tp.newUser();
  const d = await deploy(api, 'deleted-later', await makeNodeFunction(HANDLER), `deploy-${randomBytes(4).toString('hex')}`);
  assert.is((await waitForBuild(api, d.id, 1)).status, 'active');
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
  const series = (samples: Sample[]) => samples.filter((s) => s.labels.function_id === d.id).map((s) => s.name);
  assert.ok(series(await scrape()).includes('containerpub_invocations_total'));
  assert.is((await api.del(`/api/functions/${d.id}`)).status, 204);
  // the serving process drops them once it has followed the deletion (right after the answer)
  await waitFor('the deleted function\'s series to go', async () => series(await scrape()).length === 0, { timeoutMs: 10_000, intervalMs: 50 });
  assert.ok(series(await scrape()).length === 0);
  // the other functions' series stay
  assert.ok(valueOf(await scrape(), 'containerpub_invocations_total', { function_id: fnId }) >= 3);
});

metrics('a request to no route is labelled as unmatched', async () => {
  const before = valueOf(await scrape(), 'containerpub_http_requests_total', { route: 'unmatched', status: '404' });
  assert.is((await fetch(`${tp.url}/no/such/${randomBytes(4).toString('hex')}`)).status, 404);
  assert.is((await fetch(`${tp.url}/api/nothing-here`)).status, 404);
  const after = valueOf(await scrape(), 'containerpub_http_requests_total', { route: 'unmatched', status: '404' });
  assert.is(after - before, 2);
});

// -------------------------------------------------------------------------------------- logs
const logs = suite('logs');

logs('every API request gets an id: a sane X-Request-Id is kept, anything else replaced', async () => {
  const mine = await tp.http.get('/healthz', { headers: { 'x-request-id': 'trace-1.a:b_c' } });
  assert.is(mine.headers.get('x-request-id'), 'trace-1.a:b_c');
  const fresh = await tp.http.get('/healthz');
  assert.match(fresh.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  for (const bad of ['x'.repeat(129), 'has space', 'quote"d', '{"level":"fatal"}']) {
    const res = await tp.http.get('/healthz', { headers: { 'x-request-id': bad } });
    assert.match(res.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/, bad);
  }
  // errors answer it too, and the invocation's record shares the request's id
  const denied = await tp.http.get('/api/functions', { headers: { 'x-request-id': 'denied-1' } });
  assert.is(denied.status, 401);
  assert.is(denied.headers.get('x-request-id'), 'denied-1');
  const invoked = await user.post(`/api/functions/${fnId}/invoke`, {}, { headers: { 'x-request-id': 'invoke-42' } });
  assert.is(invoked.headers.get('x-request-id'), 'invoke-42');
  assert.is(invoked.body.requestId, 'invoke-42');
});

logs('every line is one JSON object; the runner\'s build of a deployment carries the deploy request\'s id', async () => {
  assert.ok(lines.length > 0);
  const entries = parsed();
  for (const e of entries) {
    assert.type(e.msg, 'string');
    assert.ok(['debug', 'info', 'warn', 'error'].includes(e.level), e.level);
    assert.match(e.time, /^\d{4}-\d\d-\d\dT/);
  }
  const dep = await tp.platform.db.knex('function_deployments').where({ function_id: fnId, version: 1 }).first();
  assert.is(dep.request_id, DEPLOY_REQUEST);
  const build = entries.filter((e) => e.deploymentId === dep.id);
  assert.ok(build.some((e) => e.msg === 'build started'), JSON.stringify(build));
  assert.ok(build.some((e) => /^build succeeded/.test(e.msg)), JSON.stringify(build));
  for (const e of build) assert.is(e.requestId, DEPLOY_REQUEST, JSON.stringify(e));
  assert.ok(entries.some((e) => e.runnerId === tp.runner!.id && e.requestId === DEPLOY_REQUEST));
});

logs('an error is logged with its type, message and stack, and the id of the request that met it', async () => {
  const d = await tp.platform.db.knex('function_deployments').where({ function_id: fnId, is_active: true }).first();
  // the live version's files vanish (removed by hand): the next invocation meets the missing artifact
  await tp.invoker.manager.dropFunction(fnId);
  await tp.driver.removeArtifact({ functionId: fnId, version: Number(d.version), imageTag: d.image_tag });
  const res = await user.post(`/api/functions/${fnId}/invoke`, {}, { headers: { 'x-request-id': 'lost-artifact' } });
  assert.is(res.status, 503, JSON.stringify(res.body));
  const line = parsed().find((e) => e.requestId === 'lost-artifact' && e.err);
  assert.ok(line, 'a line about it');
  assert.type(line!.err.type, 'string');
  assert.type(line!.err.message, 'string');
  assert.match(line!.err.stack, /\n\s+at /);
  assert.is(line!.functionId, fnId);
  // the rebuild it asked for goes through
  await waitFor('the rebuilt version to answer', async () => ((await user.post(`/api/functions/${fnId}/invoke`, {})).status === 200 ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 200,
  });
});

logs('no secret value, token or upload signature in any line', async () => {
  // whatever a call site passes, fields named like credentials are redacted, and values scrubbed
  tp.platform.logger.warn(`careless ${SECRET}`, { leaked: SECRET, token: user.token, nested: { authorization: `Bearer ${user.token}` }, password: 'pw-123456' });
  const careless = parsed().find((e) => e.msg.startsWith('careless'))!;
  assert.is(careless.msg, 'careless [redacted]');
  assert.is(careless.leaked, '[redacted]');
  assert.is(careless.token, '[redacted]');
  assert.is(careless.nested.authorization, '[redacted]');
  assert.is(careless.password, '[redacted]');
  const sig = new URL(uploadUrl).searchParams.get('sig') ?? new URL(uploadUrl).searchParams.get('X-Amz-Signature');
  assert.ok(sig, uploadUrl);
  const all = lines.join('\n');
  for (const [what, value] of [
    ['the secret', SECRET],
    ['the API token', user.token],
    ['the metrics token', METRICS_TOKEN],
    ['the upload URL signature', sig!],
  ] as const) {
    assert.not.ok(all.includes(value), `${what} appears in a log line`);
  }
});

logs('pretty format renders the same entries readably; the level filters', () => {
  const out: string[] = [];
  const log = createLogger('info', { svc: 't' }, (l) => out.push(l), 'pretty');
  log.debug('hidden');
  log.warn('shown', { err: new Error('kaput') });
  assert.is(out.length, 1);
  assert.match(out[0]!, /WARN/);
  assert.match(out[0]!, /shown/);
  assert.match(out[0]!, /kaput/);
  assert.throws(() => JSON.parse(out[0]!));
});

logs('a build that crashes (its failure cannot even be recorded) logs it with the deploy request\'s id, not the id of whatever woke the runner', async () => {
  // A real fault: the build's database handle is a pool already closed, so the build cannot record
  // its start, nor then its failure.
  const closed = createDb(tp.platform.config.database);
  await closed.close();
  const id = crypto.randomUUID();
  const before = lines.length;
  // started while serving another request, as a runner woken by a request is
  await withRequestId('some-other-request', () =>
    runBuild(
      { p: { ...tp.platform, db: closed }, driver: tp.driver, runnerId: 'crash-test', logger: tp.platform.logger, shutdown: new AbortController().signal },
      { id, functionId: crypto.randomUUID(), version: 1, s3Key: 'nowhere', attempts: 1, archiveSha256: null, config: {}, reuseFrom: null, claimToken: 'token', requestId: 'deploy-req-crash' },
    ),
  );
  const crash = lines.slice(before).map((l) => JSON.parse(l) as Record<string, any>).find((e) => e.msg === 'build crashed' && e.deploymentId === id);
  assert.ok(crash, 'a "build crashed" line');
  assert.is(crash!.requestId, 'deploy-req-crash');
  assert.is(crash!.level, 'error');
});

// ---------------------------------------------------------------------- health and /api/status
const health = suite('health and status');

health('/readyz: each dependency with its latency', async () => {
  const res = await tp.http.get('/readyz');
  assert.is(res.status, 200);
  assert.is(res.body.status, 'ready');
  assert.is(res.body.database, 'ok');
  assert.is(res.body.storage, 'ok');
  for (const name of ['database', 'storage']) {
    assert.is(res.body.checks[name].ok, true);
    assert.type(res.body.checks[name].latencyMs, 'number');
  }
  // the process driver: no engine to ask; no REGISTRY: no registry
  assert.is(res.body.checks.engine, undefined);
  assert.is(res.body.checks.registry, undefined);
});

health('/readyz asks the Docker engine when the driver is docker', async () => {
  const engineAt = (docker: Docker) => ({ name: 'docker', docker }) as unknown as RuntimeDriver;
  const readyWith = async (driver: RuntimeDriver) => {
    const served = await serveApi(createApi(tp.platform, { driver }), { host: '127.0.0.1', port: 0 });
    try {
      const res = await fetch(`${served.url}/readyz`);
      return { status: res.status, body: (await res.json()) as any };
    } finally {
      await served.close();
    }
  };
  const down = await readyWith(engineAt(new Docker({ socketPath: path.join(tp.dataDir, 'no-engine.sock') })));
  assert.is(down.status, 503);
  assert.is(down.body.checks.engine.ok, false);
  assert.type(down.body.checks.engine.error, 'string');
  assert.match(down.body.error.message, /engine/);
  if ((await dockerAvailable()) === null) {
    const up = await readyWith(engineAt(new Docker()));
    assert.is(up.status, 200, JSON.stringify(up.body));
    assert.is(up.body.checks.engine.ok, true);
    assert.type(up.body.checks.engine.latencyMs, 'number');
  }
});

health('/api/status: signed in only; version, database, storage, driver, the running runner, the queue', async () => {
  assert.is((await tp.http.get('/api/status')).status, 401);
  // a runner that stopped beating two minutes ago is not listed
  const stale = new Date(Date.now() - 120_000).toISOString();
  await tp.platform.db.knex('runners').insert({ id: 'gone-runner', started_at: stale, last_seen_at: stale, driver: 'process' });
  const res = await user.get('/api/status');
  assert.is(res.status, 200, JSON.stringify(res.body));
  const b = res.body;
  assert.equal(Object.keys(b).sort(), ['database', 'driver', 'queue', 'runners', 'storage', 'version']);
  assert.is(b.version, JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  assert.is(b.database.dialect, testDbKind() === 'postgres' ? 'pg' : 'sqlite');
  assert.is(b.database.ok, true);
  assert.type(b.database.latencyMs, 'number');
  assert.is(b.storage.ok, true);
  assert.type(b.storage.latencyMs, 'number');
  assert.is(b.driver, 'process');
  assert.equal(b.runners.map((r: any) => r.id), [tp.runner!.id]);
  const seen = Date.parse(b.runners[0].lastSeenAt);
  assert.ok(Date.now() - seen < 60_000, b.runners[0].lastSeenAt);
  assert.is(b.runners[0].driver, 'process');
  assert.type(b.queue.depth, 'number');
  assert.ok('oldestQueuedAt' in b.queue);
});

health('a platform whose registry is down: /readyz 503 naming it; a queued build shows in the status and the metrics; a runner alone serves its metrics port', async () => {
  const other = (await startTestPlatform({ REGISTRY: '127.0.0.1:9', METRICS_TOKEN }, {})) as TestPlatform;
  let service: Awaited<ReturnType<typeof startRunnerService>> | undefined;
  try {
    const ready = await other.http.get('/readyz');
    assert.is(ready.status, 503);
    assert.is(ready.body.error.code, 'unavailable');
    assert.match(ready.body.error.message, /registry/);
    assert.is(ready.body.checks.registry.ok, false);
    assert.type(ready.body.checks.registry.latencyMs, 'number');
    assert.is(ready.body.checks.database.ok, true);
    assert.is(ready.body.database, 'ok');

    // no runner yet: the build waits
    const api = await other.newUser();
    const d = await deploy(api, 'queued', await makeNodeFunction(HANDLER), 'queued-deploy');
    const status = await api.get('/api/status');
    assert.is(status.body.queue.depth, 1);
    assert.match(status.body.queue.oldestQueuedAt, /^\d{4}-\d\d-\d\dT.*Z$/);
    assert.equal(status.body.runners, []);
    assert.is(valueOf(await scrape(other.url), 'containerpub_build_queue_depth'), 1);

    // a runner comes (as `npm run start:runner` starts it, RUNNER_METRICS_PORT=0: any port)
    service = await startRunnerService(other.platform, { metricsPort: 0 });
    const runnerUrl = service.metricsServer!.url;
    assert.is((await fetch(`${runnerUrl}/metrics`)).status, 401);
    assert.is((await fetch(`${runnerUrl}/elsewhere`)).status, 404);
    assert.is((await waitForBuild(api, d.id, d.version)).status, 'active');
    const own = await scrape(runnerUrl);
    assert.is(valueOf(own, 'containerpub_builds_total', { outcome: 'succeeded' }), 1);
    assert.ok(own.some((s) => s.name === 'containerpub_builds_running'));
    const after = await api.get('/api/status');
    assert.equal(after.body.runners.map((r: any) => r.id), [service.runner.id]);
    assert.is(after.body.queue.depth, 0);
    assert.is(after.body.queue.oldestQueuedAt, null);
  } finally {
    for (const step of service?.stopSteps ?? []) await step();
    await other.close();
  }
  // a runner that stopped removed its heartbeat (checked on the first platform's runner at the end)
});

health('`npm start`: one process, one /metrics for the API and the runner; JSON lines when not on a terminal', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-obs-start-'));
  const pg = testDbKind() === 'postgres' ? await createPgDatabase() : null;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATA_DIR: dataDir,
    PORT: '0',
    RUNTIME_DRIVER: 'process',
    LOG_LEVEL: 'info',
    CLEANUP_CRON: 'off',
    ...(pg ? { DATABASE_URL: pg.url } : {}),
  };
  // the default: JSON, since stderr is a pipe here
  delete env.LOG_FORMAT;
  for (const name of ['S3_ENDPOINT', 'SECRETS_KEY', 'METRICS_TOKEN']) delete env[name];
  const child = spawn(process.execPath, nodeArgsFor('scripts/start.ts'), {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const url = await waitFor(
      'npm start to listen',
      async () => {
        for (const l of stderr.split('\n').filter(Boolean)) {
          const e = JSON.parse(l);
          if (e.msg === 'ContainerPub is running') return e.url as string;
        }
        return undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const samples = await scrape(url, null);
    assert.ok(samples.some((s) => s.name === 'containerpub_builds_running'), 'the runner\'s metrics');
    assert.ok(samples.some((s) => s.name === 'containerpub_instances'), 'the invoker\'s metrics');
    assert.ok(samples.some((s) => s.name === 'containerpub_http_requests_total' || s.name === 'process_cpu_user_seconds_total'));
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('close', r));
    await pg?.drop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  for (const l of stderr.split('\n').filter(Boolean)) JSON.parse(l);
});

health('a runner that stops removes its heartbeat row', async () => {
  await tp.runner!.stop(5000);
  const rows = await tp.platform.db.knex('runners').where({ id: tp.runner!.id });
  assert.equal(rows, []);
  assert.equal((await user.get('/api/status')).body.runners, []);
});

health.after(() => tp.close());
metrics.run();
logs.run();
health.run();
