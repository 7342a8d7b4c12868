// Several real runner processes on one database: every queued build is built exactly once, and a
// runner killed with SIGKILL mid-build has its build finished by another.
import fs from 'node:fs';
import { suite } from 'uvu';
import { buildsDir } from '../shared/work-dirs.ts';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployPresigned, waitForBuild } from './support/flows.ts';
import { runnerEnv, spawnRunner, startStallingProxy, type RunnerProcess } from './support/processes.ts';
import { waitFor } from './support/services.ts';

const t = await startTestPlatform();
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db.knex;
const fn = (tag: string) => makeNodeFunction(`export default async () => ({ tag: ${JSON.stringify(tag)} });`);

const cluster = suite('runner cluster');
let runners: RunnerProcess[] = [];
cluster.after.each(async () => {
  await Promise.all(runners.map((r) => r.kill('SIGKILL')));
  runners = [];
});

cluster('three runner processes and 30 queued deployments: each built exactly once', async () => {
  const api = await tp.newUser();
  runners = ['r1', 'r2', 'r3'].map((id) => spawnRunner(id, runnerEnv(tp)));
  const deployments = await Promise.all(
    Array.from({ length: 30 }, async (_, i) => deployPresigned(api, `fn-${i % 10}`, await fn(`n${i}`))),
  );
  await waitFor(
    'all 30 builds to finish',
    async () => {
      const rows = await db('function_deployments').whereIn('id', deployments.map((d) => d.deploymentId)).select('status');
      return rows.every((r) => r.status === 'active' || r.status === 'failed');
    },
    { timeoutMs: 120_000, intervalMs: 200 },
  );
  const rows = await db('function_deployments').whereIn('id', deployments.map((d) => d.deploymentId));
  for (const r of rows) {
    assert.is(r.status, 'active', `${r.id}: ${r.error}`);
    assert.is(Number(r.attempts), 1, 'claimed once');
  }
  const started = await db('function_logs').whereIn('deployment_id', deployments.map((d) => d.deploymentId)).andWhere({ event: 'build_started' });
  assert.is(started.length, 30, 'exactly one build per deployment');
  const succeeded = await db('function_logs').whereIn('deployment_id', deployments.map((d) => d.deploymentId)).andWhere({ event: 'build_succeeded' });
  assert.is(succeeded.length, 30);
  // every function ends with its highest version live, and exactly one live row each
  const active = await db('function_deployments').whereIn('id', deployments.map((d) => d.deploymentId)).andWhere('is_active', true);
  assert.is(active.length, 10);
  for (const a of active) assert.is(Number(a.version), 3);
  const byRunner: Record<string, number> = {};
  for (const s of started) {
    const who = /started by (\S+)/.exec(s.message)?.[1] ?? '?';
    byRunner[who] = (byRunner[who] ?? 0) + 1;
  }
  process.stderr.write(`builds per runner: ${JSON.stringify(byRunner)}\n`);
});

cluster('a runner killed with SIGKILL mid-build: another runner finishes the build', async () => {
  const api = await tp.newUser();
  const archive = await fn('survivor');
  const deploy = await api.post('/api/functions/deploy', { name: 'survivor', ...declaration(archive) });
  await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  const proxy = await startStallingProxy(tp.platform.embeddedS3!.endpoint, `/functions/${deploy.body.id}/v1/`);
  try {
    // runner A reaches S3 through the proxy, which holds its download: A is mid-build when killed
    const a = spawnRunner('victim', runnerEnv(tp, { S3_ENDPOINT: proxy.url, RUNNER_LEASE_MS: '1500' }));
    runners.push(a);
    await api.post(`/api/functions/${deploy.body.id}/deployments/1/complete`);
    await proxy.untilHeld();
    const claimed = await db('function_deployments').where({ id: deploy.body.deploymentId }).first();
    assert.is(claimed.claimed_by, 'victim');
    assert.is(claimed.status, 'building');
    const victimPid = a.child.pid!;
    const leftBehind = () => fs.readdirSync(buildsDir(tp.dataDir)).filter((n) => n.includes(`-${victimPid}-`));
    assert.is(leftBehind().length, 1, 'the victim unpacks into a work directory of its own');
    await a.kill('SIGKILL');
    assert.is(leftBehind().length, 1, 'a SIGKILL leaves it behind');

    const b = spawnRunner('rescuer', runnerEnv(tp, { RUNNER_LEASE_MS: '1500' }));
    runners.push(b);
    const built = await waitForBuild(api, deploy.body.id, 1, 60_000);
    assert.is(built.status, 'active', built.error ?? '');
    assert.is(built.isActive, true);
    assert.is(built.attempts, 2);
    assert.match(built.buildLogs, /on rescuer/);
    assert.equal(leftBehind(), [], "the next runner to start swept the dead runner's work directory");
    const res = await api.post(`/api/functions/${deploy.body.id}/invoke`, {});
    assert.is(res.body.result.tag, 'survivor');
    const starts = (await api.get(`/api/functions/${deploy.body.id}/logs`)).body.logs
      .filter((l: any) => l.event === 'build_started')
      .map((l: any) => /started by (\S+)/.exec(l.message)?.[1]);
    assert.equal(starts.sort(), ['rescuer', 'victim']);
  } finally {
    await proxy.close();
  }
});

cluster('a build whose runners keep dying is failed with the reason after its last attempt', async () => {
  const api = await tp.newUser();
  const archive = await fn('x');
  const deploy = await api.post('/api/functions/deploy', { name: 'cursed', ...declaration(archive) });
  await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  const proxy = await startStallingProxy(tp.platform.embeddedS3!.endpoint, `/functions/${deploy.body.id}/v1/`);
  try {
    const env = { S3_ENDPOINT: proxy.url, RUNNER_LEASE_MS: '1000', RUNNER_MAX_ATTEMPTS: '2' };
    await api.post(`/api/functions/${deploy.body.id}/deployments/1/complete`);
    for (let attempt = 1; attempt <= 2; attempt++) {
      const r = spawnRunner(`doomed-${attempt}`, runnerEnv(tp, env));
      runners.push(r);
      await waitFor(`attempt ${attempt} to be held`, () => proxy.held() >= attempt, { timeoutMs: 30_000 });
      await r.kill('SIGKILL');
    }
    runners.push(spawnRunner('sweeper', runnerEnv(tp, env)));
    const done = await waitForBuild(api, deploy.body.id, 1, 30_000);
    assert.is(done.status, 'failed');
    assert.match(done.error, /abandoned after 2 attempts/);
    assert.is(proxy.held(), 2, 'no third attempt');
  } finally {
    await proxy.close();
  }
});

// SQLite has no NOTIFY (polling is its only path): there the case is reported as skipped
(tp.platform.db.dialect === 'pg' ? cluster : cluster.skip)('PostgreSQL: a queued build wakes an idle runner at once (NOTIFY), not at its next poll', async () => {
  const api = await tp.newUser();
  const r = spawnRunner('listener', runnerEnv(tp, { RUNNER_POLL_MS: '600000' }));
  runners.push(r);
  await waitFor('the runner to listen', () => r.output().includes('runner started'), { timeoutMs: 30_000 });
  const d = await deployPresigned(api, 'woken', await fn('now'));
  // the poll would come in ten minutes; only the notification can start this build in time
  const built = await waitForBuild(api, d.id, 1, 20_000);
  assert.is(built.status, 'active');
});

cluster('the usage rows the quotas read agree with a recount, after the runners above built side by side', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
  assert.ok(counted.archiveBytes > 0, 'and stored archives');
});

cluster.after(() => tp.close());
cluster.run();
