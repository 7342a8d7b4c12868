// Canaries end to end on SQLite and PostgreSQL: real functions (process driver) served through
// their endpoints under steady traffic, the runner's canary controller (two of them at once, as
// two runners would), metrics flushed by the serving process. A healthy candidate walks every
// step and is promoted; a failing one is rolled back in its first interval while the live version
// never fails; no traffic never promotes; a restarted controller resumes; a deploy or a rollback
// during a canary; the API's 400s, 404s and 409s; and the CLI following a canary.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { CanaryController } from '../runner/canary-controller.ts';
import { makeNodeFunction } from './support/archives.ts';
import { cliEnv, newHome, runCli } from './support/cli.ts';
import { declaration, deployAndBuild } from './support/flows.ts';
import { client, type Client } from './support/http.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { waitFor } from './support/services.ts';

// Short everything: the controller looks every 100 ms, serving processes flush metrics every 100 ms.
const t = await startTestPlatform({ METRICS_FLUSH_MS: '100', CANARY_TICK_MS: '100', FUNCTION_IDLE_MS: '60000' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

/** The runner's controllers: two at once, as two runners would run them (see the restart test). */
let controllers: CanaryController[] = [];
let holders = 0;
function startControllers(n = 2): void {
  for (let i = 0; i < n; i++) {
    const c = new CanaryController(tp.platform, `test-controller-${++holders}`);
    c.start();
    controllers.push(c);
  }
}
async function stopControllers(): Promise<void> {
  await Promise.all(controllers.map((c) => c.stop()));
  controllers = [];
}
startControllers();

const OK = (label: string) => `
export default {
  async fetch(request, context) {
    return new Response(${JSON.stringify(label)} + ' v' + context.version);
  },
};`;

/** Every other request of an instance answers 500. */
const HALF_FAILING = `
let calls = 0;
export default {
  async fetch(request, context) {
    calls++;
    if (calls % 2 === 0) return new Response('failing on purpose', { status: 500 });
    return new Response('flaky v' + context.version);
  },
};`;

type User = Client & { userId: string; token: string; handle: string };
let userCount = 0;
async function newUser(): Promise<User> {
  const handle = `canary-${process.pid}-${++userCount}-${Math.random().toString(36).slice(2, 6)}`;
  const res = await tp.http.post('/api/auth/register', { email: `${handle}@example.com`, password: 'correct horse battery', handle });
  assert.is(res.status, 201, JSON.stringify(res.body));
  return Object.assign(client(tp.url, res.body.token), { userId: res.body.userId, token: res.body.token, handle: res.body.handle as string });
}

interface Fn {
  id: string;
  name: string;
  url: string;
}

/** v1 (healthy) live, v2 (`candidate` source) built and not live, the endpoint public. */
async function twoVersions(u: User, name: string, candidate: string): Promise<Fn> {
  const v1 = await deployAndBuild(u, name, await makeNodeFunction(OK(`${name} one`)));
  assert.is(v1.built.status, 'active', JSON.stringify(v1.built));
  const v2 = await deployAndBuild(u, name, await makeNodeFunction(candidate));
  assert.is(v2.built.status, 'active', JSON.stringify(v2.built));
  // v2 went live when built: make v1 the live one again (v2 stays built)
  const back = await u.post(`/api/functions/${v1.id}/rollback`, { version: 1 });
  assert.is(back.status, 200, JSON.stringify(back.body));
  const patched = await u.request('PATCH', `/api/functions/${v1.id}`, { json: { access: 'public' } });
  assert.is(patched.status, 200, JSON.stringify(patched.body));
  return { id: v1.id, name, url: `${tp.url}/fn/${u.handle}/${name}/` };
}

interface Answer {
  version: string | null;
  status: number;
  startedAt: number;
}

/** Steady traffic to an endpoint from `concurrency` callers; every answer kept with its version. */
function traffic(url: string, concurrency = 3) {
  const answers: Answer[] = [];
  const failures: string[] = [];
  let stopping = false;
  const workers = Array.from({ length: concurrency }, async () => {
    while (!stopping) {
      const startedAt = Date.now();
      try {
        const res = await fetch(url);
        await res.arrayBuffer();
        answers.push({ version: res.headers.get('x-function-version'), status: res.status, startedAt });
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  });
  return {
    answers,
    failures,
    byVersion(v: string) {
      return answers.filter((a) => a.version === v);
    },
    async stop() {
      stopping = true;
      await Promise.all(workers);
    },
  };
}

const events = async (u: User, fnId: string) =>
  ((await u.get(`/api/functions/${fnId}/logs?limit=1000`)).body.logs as { id: number; event: string; message: string; version: number | null; createdAt: string }[])
    .slice()
    .reverse();
const count = (list: { event: string }[], event: string) => list.filter((e) => e.event === event).length;

async function canaryOf(u: User, fnId: string) {
  const res = await u.get(`/api/functions/${fnId}/canary`);
  assert.is(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

async function canaryEnded(u: User, fnId: string, timeoutMs = 30_000) {
  return waitFor(
    'the canary to end',
    async () => {
      const c = await canaryOf(u, fnId);
      return c.status !== 'running' ? c : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

async function functionView(u: User, fnId: string) {
  const res = await u.get(`/api/functions/${fnId}`);
  assert.is(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

/** The traffic split as [version, percent, role] rows, live first. */
const splitOf = (fn: { traffic: { version: number; percent: number; role: string }[] }) =>
  fn.traffic.map((r) => [r.version, r.percent, r.role]).sort((a, b) => (a[2] === 'live' ? -1 : b[2] === 'live' ? 1 : 0));

// ---------------------------------------------------------------------------------------------
const walk = suite('canary: the controller');

walk.after(async () => {
  await stopControllers();
});

walk('a healthy candidate walks through every step, one advance per step with two controllers, and is promoted', async () => {
  const u = await newUser();
  const fn = await twoVersions(u, 'healthy', OK('healthy two'));
  const load = traffic(fn.url);
  try {
    const started = await u.post(`/api/functions/${fn.id}/canary`, { version: 2, steps: [20, 50, 100], intervalSeconds: 1, minRequests: 5 });
    assert.is(started.status, 201, JSON.stringify(started.body));
    assert.is(started.body.status, 'running');
    assert.is(started.body.percent, 20);
    assert.equal(started.body.steps, [20, 50, 100]);
    assert.equal(splitOf(await functionView(u, fn.id)), [[1, 80, 'live'], [2, 20, 'candidate']]);

    const ended = await canaryEnded(u, fn.id);
    assert.is(ended.status, 'promoted', JSON.stringify(ended));
    assert.is(ended.percent, 100);
    assert.is(ended.stepIndex, 2);
    assert.is(ended.lastEvaluation.verdict, 'promoted');
    assert.ok(ended.lastEvaluation.requests >= 5, JSON.stringify(ended.lastEvaluation));
    assert.match(ended.reason, /all 3 steps passed/);
  } finally {
    await load.stop();
  }
  const view = await functionView(u, fn.id);
  assert.is(view.activeVersion, 2);
  assert.equal(splitOf(view), [[2, 100, 'live']]);

  const log = await events(u, fn.id);
  assert.is(count(log, 'canary_started'), 1);
  // two controllers were deciding all along: each step was taken once
  const advanced = log.filter((e) => e.event === 'canary_advanced');
  assert.is(advanced.length, 2, JSON.stringify(advanced));
  assert.match(advanced[0]!.message, /advanced to 50 % \(step 2 of 3\)/);
  assert.match(advanced[1]!.message, /advanced to 100 % \(step 3 of 3\)/);
  assert.is(count(log, 'canary_promoted'), 1);
  // each step lasted its interval at least
  const times = [log.find((e) => e.event === 'canary_started')!, ...advanced, log.find((e) => e.event === 'canary_promoted')!].map((e) =>
    Date.parse(e.createdAt),
  );
  for (let i = 1; i < times.length; i++) assert.ok(times[i]! - times[i - 1]! >= 950, `step ${i} lasted ${times[i]! - times[i - 1]!} ms`);
  // nothing failed: every answer came from one of the two versions, with 200
  assert.equal(load.failures, []);
  assert.ok(load.answers.length > 0);
  assert.equal(load.answers.filter((a) => a.status !== 200 || !['1', '2'].includes(a.version ?? '')), []);
  assert.ok(load.byVersion('2').length > 0 && load.byVersion('1').length > 0);
});

walk('a candidate failing 50 % is rolled back within its first interval, with the numbers; no request on the live version fails', async () => {
  const u = await newUser();
  const fn = await twoVersions(u, 'flaky', HALF_FAILING);
  const load = traffic(fn.url, 4);
  let observedAt = 0;
  let ended: any;
  try {
    const started = await u.post(`/api/functions/${fn.id}/canary`, { version: 2, steps: [25, 50, 100], intervalSeconds: 2, minRequests: 10 });
    assert.is(started.status, 201, JSON.stringify(started.body));
    ended = await canaryEnded(u, fn.id, 15_000);
    observedAt = Date.now();
    // keep calling a while after the rollback: those answers must all come from the live version
    const before = load.answers.length;
    await waitFor('20 answers after the rollback', () => load.answers.length >= before + 20, { timeoutMs: 10_000 });
  } finally {
    await load.stop();
  }
  assert.is(ended.status, 'rolled_back', JSON.stringify(ended));
  // within one interval: decided at the first step, before it could ever advance
  assert.is(ended.stepIndex, 0);
  const took = Date.parse(ended.finishedAt) - Date.parse(ended.createdAt);
  assert.ok(took < 2000 + 1000, `rolled back ${took} ms after it started (interval 2 s)`);
  assert.match(ended.reason, /^at 25 % \(step 1 of 3\): error rate \d+\.\d % \(\d+ errors in \d+ requests; 0 timeouts, 0 crashes\) is over maxErrorRate 5\.0 %/);
  assert.is(ended.percent, 0);
  assert.is(ended.lastEvaluation.verdict, 'rolled_back');
  assert.ok(ended.window.errors > 0 && ended.window.errors <= ended.window.requests, JSON.stringify(ended.window));
  assert.ok(ended.window.errorRate > 0.05, JSON.stringify(ended.window));

  const log = await events(u, fn.id);
  assert.is(count(log, 'canary_advanced'), 0);
  const rolled = log.filter((e) => e.event === 'canary_rolled_back');
  assert.is(rolled.length, 1);
  assert.match(rolled[0]!.message, new RegExp(`${ended.window.errors} errors in ${ended.window.requests} requests`));
  const view = await functionView(u, fn.id);
  assert.is(view.activeVersion, 1);
  assert.equal(splitOf(view), [[1, 100, 'live']]);

  assert.equal(load.failures, []);
  assert.equal(load.answers.filter((a) => a.version === null), [], 'every answer names its version');
  const live = load.byVersion('1');
  assert.ok(live.length > 20);
  assert.equal(live.filter((a) => a.status !== 200), [], 'not one request on the live version failed');
  assert.ok(load.byVersion('2').some((a) => a.status === 500), 'the candidate did fail');
  assert.equal(
    load.answers.filter((a) => a.startedAt > observedAt && a.version !== '1'),
    [],
    'after the rollback only the live version answers',
  );
});

walk('a canary without traffic waits (one event per step) and never promotes; requests then let it advance; DELETE aborts it', async () => {
  const u = await newUser();
  const fn = await twoVersions(u, 'quiet', OK('quiet two'));
  const started = await u.post(`/api/functions/${fn.id}/canary`, { version: 2, steps: [50, 100], intervalSeconds: 1, minRequests: 5 });
  assert.is(started.status, 201, JSON.stringify(started.body));
  await waitFor('a canary_waiting event', async () => count(await events(u, fn.id), 'canary_waiting') > 0, { timeoutMs: 10_000 });
  // three more intervals, looking all the while: still at its first step, still waiting
  const until = Date.now() + 3000;
  const ticks = controllers[0]!.ticks;
  await waitFor(
    'three more intervals',
    async () => {
      const c = await canaryOf(u, fn.id);
      assert.is(c.status, 'running');
      assert.is(c.stepIndex, 0);
      assert.is(c.window.requests, 0);
      return Date.now() > until && controllers[0]!.ticks > ticks + 10;
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  let c = await canaryOf(u, fn.id);
  assert.is(c.lastEvaluation.verdict, 'waiting');
  assert.ok(Date.parse(c.nextEvaluationAt) <= Date.now());
  assert.is(count(await events(u, fn.id), 'canary_waiting'), 1, 'one waiting event for the step, however often it looked');
  assert.is((await functionView(u, fn.id)).activeVersion, 1);

  // the evidence arrives: it advances (and never promotes: the last step needs its own requests)
  let served2 = 0;
  await waitFor(
    'the candidate to serve 5 requests',
    async () => {
      const res = await fetch(fn.url);
      await res.arrayBuffer();
      assert.is(res.status, 200);
      if (res.headers.get('x-function-version') === '2') served2++;
      return served2 >= 5;
    },
    { timeoutMs: 15_000, intervalMs: 1 },
  );
  await waitFor('the second step', async () => (await canaryOf(u, fn.id)).stepIndex === 1, { timeoutMs: 10_000 });
  c = await canaryOf(u, fn.id);
  assert.is(c.status, 'running');
  assert.is(c.percent, 100);

  const aborted = await u.request('DELETE', `/api/functions/${fn.id}/canary`);
  assert.is(aborted.status, 200, JSON.stringify(aborted.body));
  assert.is(aborted.body.status, 'aborted');
  assert.is(aborted.body.percent, 0);
  assert.match(aborted.body.reason, /aborted by canary-/);
  const view = await functionView(u, fn.id);
  assert.is(view.activeVersion, 1);
  assert.equal(splitOf(view), [[1, 100, 'live']]);
  const log = await events(u, fn.id);
  assert.is(count(log, 'canary_aborted'), 1);
  assert.is(count(log, 'canary_promoted'), 0);
  // nothing to abort any more; GET shows the latest (ended) canary
  const again = await u.request('DELETE', `/api/functions/${fn.id}/canary`);
  assert.is(again.status, 404, JSON.stringify(again.body));
  assert.is((await canaryOf(u, fn.id)).status, 'aborted');
});

walk('restarting the controller mid-canary resumes it from its state in the database', async () => {
  const u = await newUser();
  const fn = await twoVersions(u, 'resume', OK('resume two'));
  const load = traffic(fn.url);
  try {
    const started = await u.post(`/api/functions/${fn.id}/canary`, { version: 2, steps: [20, 50, 100], intervalSeconds: 1, minRequests: 3 });
    assert.is(started.status, 201, JSON.stringify(started.body));
    await waitFor('the second step', async () => (await canaryOf(u, fn.id)).stepIndex >= 1, { timeoutMs: 15_000 });
    // the runners go away mid-canary
    await stopControllers();
    const held = await canaryOf(u, fn.id);
    assert.is(held.status, 'running');
    // with nobody deciding, two intervals pass and nothing moves
    const until = Date.now() + 2000;
    await waitFor(
      'two intervals without a controller',
      async () => {
        const c = await canaryOf(u, fn.id);
        assert.is(c.stepIndex, held.stepIndex);
        assert.is(c.status, 'running');
        return Date.now() > until;
      },
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    // new runners take over from the row
    startControllers();
    const ended = await canaryEnded(u, fn.id);
    assert.is(ended.status, 'promoted', JSON.stringify(ended));
    assert.is(ended.id, started.body.id);
  } finally {
    await load.stop();
  }
  const log = await events(u, fn.id);
  assert.is(count(log, 'canary_started'), 1);
  const advanced = log.filter((e) => e.event === 'canary_advanced').map((e) => /advanced to (\d+) %/.exec(e.message)![1]);
  assert.equal(advanced, ['50', '100'], 'each step once, none repeated from the start');
  assert.is((await functionView(u, fn.id)).activeVersion, 2);
  assert.equal(load.answers.filter((a) => a.status !== 200), []);
});

walk('a deploy during a canary builds but takes no traffic (the event log says so); a rollback then ends the canary', async () => {
  const u = await newUser();
  const fn = await twoVersions(u, 'busy', OK('busy two'));
  const started = await u.post(`/api/functions/${fn.id}/canary`, { version: 2, steps: [50, 100], intervalSeconds: 3600, minRequests: 5 });
  assert.is(started.status, 201, JSON.stringify(started.body));

  const v3 = await deployAndBuild(u, fn.name, await makeNodeFunction(OK('busy three')));
  assert.is(v3.built.status, 'active', JSON.stringify(v3.built));
  assert.is(v3.built.isActive, false, 'built, not live');
  const view = await functionView(u, fn.id);
  assert.is(view.activeVersion, 1);
  assert.equal(splitOf(view), [[1, 50, 'live'], [2, 50, 'candidate']]);
  const held = (await events(u, fn.id)).filter((e) => e.event === 'activation_held');
  assert.is(held.length, 1, JSON.stringify(held));
  assert.is(held[0]!.version, 3);
  assert.match(held[0]!.message, /canary/);
  const c = await canaryOf(u, fn.id);
  assert.is(c.status, 'running');
  assert.is(c.version, 2);
  // v3 serves nothing
  for (let i = 0; i < 20; i++) {
    const res = await fetch(fn.url);
    await res.arrayBuffer();
    assert.is(res.status, 200);
    assert.ok(['1', '2'].includes(res.headers.get('x-function-version') ?? ''), `served by v${res.headers.get('x-function-version')}`);
  }

  // a rollback during a canary ends the canary first
  const back = await u.post(`/api/functions/${fn.id}/rollback`, { version: 3 });
  assert.is(back.status, 200, JSON.stringify(back.body));
  const ended = await canaryOf(u, fn.id);
  assert.not.equal(ended.status, 'running');
  assert.is(ended.id, started.body.id);
  assert.ok(ended.finishedAt);
  const after = await functionView(u, fn.id);
  assert.is(after.activeVersion, 3);
  assert.equal(splitOf(after), [[3, 100, 'live']]);
  const log = await events(u, fn.id);
  const end = log.findIndex((e) => /^canary_(aborted|rolled_back|promoted)$/.test(e.event));
  const rolledBack = log.findIndex((e) => e.event === 'rolled_back' && e.version === 3);
  assert.ok(end >= 0 && rolledBack > end, `the canary ended before the rollback: ${JSON.stringify(log.map((e) => e.event))}`);
  // and a new canary may start
  const next = await u.post(`/api/functions/${fn.id}/canary`, { version: 2, intervalSeconds: 3600 });
  assert.is(next.status, 201, JSON.stringify(next.body));
  assert.is((await u.request('DELETE', `/api/functions/${fn.id}/canary`)).status, 200);
});

// ---------------------------------------------------------------------------------------------
const api = suite('canary: the API refuses what cannot be');

let owner: User;
let fnId = '';

api.before(async () => {
  owner = await newUser();
  fnId = (await twoVersions(owner, 'refusals', OK('refusals two'))).id;
  // v3: requested, never uploaded
  const pending = await owner.post('/api/functions/deploy', { name: 'refusals', ...declaration() });
  assert.is(pending.status, 201, JSON.stringify(pending.body));
  assert.is(pending.body.version, 3);
});

api('GET and DELETE before any canary: 404', async () => {
  const get = await owner.get(`/api/functions/${fnId}/canary`);
  assert.is(get.status, 404, JSON.stringify(get.body));
  assert.is(get.body.error.code, 'not_found');
  assert.is((await owner.request('DELETE', `/api/functions/${fnId}/canary`)).status, 404);
});

api('bad bodies: 400 naming the field', async () => {
  const cases: [unknown, RegExp][] = [
    [{}, /version/],
    [{ version: '2' }, /version/],
    [{ version: 2, steps: [50, 25] }, /steps: steps must be strictly ascending/],
    [{ version: 2, steps: [] }, /steps/],
    [{ version: 2, steps: [0, 50] }, /steps\.0: a step is a percentage from 1 to 100/],
    [{ version: 2, steps: [5, 101] }, /steps\.1/],
    [{ version: 2, intervalSeconds: 0 }, /intervalSeconds/],
    [{ version: 2, intervalSeconds: 1.5 }, /intervalSeconds/],
    [{ version: 2, intervalSeconds: 86_401 }, /intervalSeconds/],
    [{ version: 2, maxErrorRate: 1.5 }, /maxErrorRate/],
    [{ version: 2, maxErrorRate: -0.1 }, /maxErrorRate/],
    [{ version: 2, maxP99Ms: 0 }, /maxP99Ms/],
    [{ version: 2, minRequests: 0 }, /minRequests/],
    [{ version: 2, colour: 'red' }, /colour/],
  ];
  for (const [body, field] of cases) {
    const res = await owner.post(`/api/functions/${fnId}/canary`, body);
    assert.is(res.status, 400, `${JSON.stringify(body)} → ${res.status} ${JSON.stringify(res.body)}`);
    assert.is(res.body.error.code, 'validation_failed');
    assert.match(res.body.error.message, field, JSON.stringify(res.body));
  }
  const notJson = await owner.request('POST', `/api/functions/${fnId}/canary`, { body: '{nope', headers: { 'content-type': 'application/json' } });
  assert.is(notJson.status, 400);
  assert.is(notJson.body.error.code, 'invalid_json');
});

api('versions that cannot be a canary: 404 unknown, 409 live, 409 not built (naming the status)', async () => {
  const unknown = await owner.post(`/api/functions/${fnId}/canary`, { version: 99 });
  assert.is(unknown.status, 404);
  assert.is(unknown.body.error.code, 'version_not_found');
  const live = await owner.post(`/api/functions/${fnId}/canary`, { version: 1 });
  assert.is(live.status, 409);
  assert.is(live.body.error.code, 'conflict');
  assert.match(live.body.error.message, /version 1 is already live/);
  const pending = await owner.post(`/api/functions/${fnId}/canary`, { version: 3 });
  assert.is(pending.status, 409);
  assert.is(pending.body.error.code, 'version_not_built');
  assert.match(pending.body.error.message, /pending_upload/);
  assert.is(count(await events(owner, fnId), 'canary_started'), 0);
});

api('one canary at a time: 409 canary_running; hand-made traffic changes are refused meanwhile', async () => {
  const first = await owner.post(`/api/functions/${fnId}/canary`, { version: 2, intervalSeconds: 3600 });
  assert.is(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.body.steps, [5, 25, 50, 100]);
  assert.is(first.body.maxErrorRate, 0.05);
  assert.is(first.body.minRequests, 20);
  assert.is(first.body.maxP99Ms, null);
  assert.match(first.body.startedBy, /@example\.com$/);
  const second = await owner.post(`/api/functions/${fnId}/canary`, { version: 2 });
  assert.is(second.status, 409);
  assert.is(second.body.error.code, 'canary_running');
  const traffic = await owner.request('PUT', `/api/functions/${fnId}/traffic`, { json: { candidate: { version: 2, percent: 50 } } });
  assert.is(traffic.status, 409, JSON.stringify(traffic.body));
  assert.is(traffic.body.error.code, 'canary_running');
  assert.is((await owner.request('DELETE', `/api/functions/${fnId}/canary`)).status, 200);
});

api("another user's function: 404 as if it did not exist", async () => {
  const other = await newUser();
  for (const [method, body] of [['GET'], ['POST', { version: 2 }], ['DELETE']] as const) {
    const res = await other.request(method, `/api/functions/${fnId}/canary`, body ? { json: body } : {});
    assert.is(res.status, 404, `${method}: ${JSON.stringify(res.body)}`);
    assert.is(res.body.error.code, 'function_not_found');
  }
});

api.after(async () => {
  await stopControllers();
});

// ---------------------------------------------------------------------------------------------
const cli = suite('canary: the CLI follows it');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-canary-cli-'));

cli.before(() => startControllers());
cli.after(async () => {
  await stopControllers();
  fs.rmSync(scratch, { recursive: true, force: true });
  await tp.close();
});

cli('canary --to prints each step and exits 0 when promoted; 1 with the numbers when rolled back; --status and --abort', async () => {
  const u = await newUser();
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: u.token });
  const good = await twoVersions(u, 'cli-good', OK('cli-good two'));
  const bad = await twoVersions(u, 'cli-bad', HALF_FAILING);

  let load = traffic(good.url);
  try {
    const r = await runCli(['canary', 'cli-good', '--to', '2', '--steps', '50,100', '--interval', '1s', '--min-requests', '3'], env);
    assert.is(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /▶ canary of cli-good v2 started: 50 % → 100 %, every 1 s \(error rate ≤ 5\.0 %, ≥ 3 requests per step\)/);
    assert.match(r.stdout, /→ step 1\/2 \(50 %\)/);
    assert.match(r.stdout, /→ step 2\/2 \(100 %\): v2 takes 100 % of the traffic \(last step: \d+ requests, 0 errors/);
    assert.match(r.stdout, /✔ cli-good v2 promoted/);
  } finally {
    await load.stop();
  }

  load = traffic(bad.url, 4);
  try {
    const r = await runCli(['canary', 'cli-bad', '--to', '2', '--steps', '50,100', '--interval', '2s', '--min-requests', '6', '--max-error-rate', '10%'], env);
    assert.is(r.code, 1, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /✖ cli-bad v2 rolled back: at 50 % \(step 1 of 2\): error rate .* is over maxErrorRate 10\.0 %/);
  } finally {
    await load.stop();
  }

  const status = await runCli(['canary', 'cli-bad', '--status'], env);
  assert.is(status.code, 0, status.stderr);
  assert.match(status.stdout, /canary of cli-bad v2: rolled back/);
  assert.match(status.stdout, /reason: at 50 %/);

  const detached = await runCli(['canary', 'cli-bad', '--to', '2', '--detach', '--interval', '1h'], env);
  assert.is(detached.code, 0, detached.stderr);
  assert.match(detached.stdout, /▶ canary of cli-bad v2 started: 5 % → 25 % → 50 % → 100 %/);
  const abort = await runCli(['canary', 'cli-bad', '--abort'], env);
  assert.is(abort.code, 0, abort.stderr);
  assert.match(abort.stdout, /canary of cli-bad v2 aborted/);
  const none = await runCli(['canary', 'cli-bad', '--abort'], env);
  assert.is(none.code, 1);
  assert.match(none.stderr, /^error: running canary not found\n$/);
});

cli('canary usage errors exit 2 before asking the API', async () => {
  const env = cliEnv(newHome(scratch), { CONTAINERPUB_URL: tp.url, CONTAINERPUB_TOKEN: 'unused' });
  for (const [args, pattern] of [
    [['canary', 'x'], /needs one of --to <version>, --status or --abort/],
    [['canary', 'x', '--to', '2', '--abort'], /needs one of/],
    [['canary', 'x', '--to', '2', '--steps', '5,x'], /--steps must be percentages/],
    [['canary', 'x', '--to', '2', '--interval', '1.5s'], /--interval must be a positive whole number of seconds/],
    [['canary', 'x', '--to', '2', '--interval', 'soon'], /--interval must be a duration/],
    [['canary', 'x', '--to', '2', '--max-error-rate', 'high'], /--max-error-rate must be a rate/],
  ] as [string[], RegExp][]) {
    const r = await runCli(args, env);
    assert.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
  }
});

walk.run();
api.run();
cli.run();
