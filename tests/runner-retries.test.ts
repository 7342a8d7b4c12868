// The build queue under faults, with real runner processes: claims fenced by a token (a runner that
// lost its lease, or shares its RUNNER_ID, changes nothing), an S3 outage waited out without spending
// attempts, failures of unknown cause retried with growing delays, all on the database's clock.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { claimBuilds, failBuild, finishBuild, releaseClaim, renewLease, retryExpiredClaims } from '../shared/domain/build-queue.ts';
import { dbNowMs, dbTimeSql } from '../shared/db/dialect.ts';
import { nowIso } from '../shared/db/time.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../shared/storage/embedded-s3.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployPresigned, waitForBuild } from './support/flows.ts';
import { runnerEnv, spawnRunner, startStallingProxy, type RunnerProcess } from './support/processes.ts';
import { waitFor } from './support/services.ts';
import { Runner } from '../runner/runner.ts';
import type { Config } from '../shared/config.ts';

const t = await startTestPlatform();
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db;
const knex = db.knex;
const fn = (tag: string) => makeNodeFunction(`export default async () => ({ tag: ${JSON.stringify(tag)} });`);
const row = (id: string) => knex('function_deployments').where({ id }).first();
const events = (deploymentId: string, event: string) =>
  knex('function_logs').where({ deployment_id: deploymentId, event }).orderBy('id', 'asc').select('message', 'created_at');
/** "retrying in 0.4 s" → 400 */
const retryDelays = (messages: { message: string }[]) => messages.map((m) => Number(/retrying in ([\d.]+) s/.exec(m.message)?.[1]) * 1000);

/** Deploys and uploads, and leaves `complete` to the caller (who may want to act before the build is queued). */
async function uploaded(api: Awaited<ReturnType<TestPlatform['newUser']>>, name: string, archive: Buffer) {
  const deploy = await api.post('/api/functions/deploy', { name, ...declaration(archive) });
  assert.is(deploy.status, 201, JSON.stringify(deploy.body));
  const put = await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  assert.is(put.status, 200);
  return {
    id: deploy.body.id as string,
    deploymentId: deploy.body.deploymentId as string,
    complete: async () => assert.is((await api.post(`/api/functions/${deploy.body.id}/deployments/1/complete`)).status, 202),
  };
}

const queue = suite('build queue');
let runners: RunnerProcess[] = [];
let inProcess: Runner[] = [];
queue.after.each(async () => {
  for (const r of runners) if (r.child.signalCode === null && r.child.exitCode === null) r.child.kill('SIGCONT');
  await Promise.all(runners.map((r) => r.kill('SIGKILL')));
  runners = [];
  await Promise.all(inProcess.map((r) => r.stop(0)));
  inProcess = [];
});

/**
 * A runner in this process, over the test platform's S3 client and database, with its own runner
 * settings. (A runner process cannot be started while S3 is down: opening the platform checks the
 * bucket.)
 */
async function startRunner(id: string, settings: Partial<Config['runner']>): Promise<Runner> {
  const config = { ...tp.platform.config, runner: { ...tp.platform.config.runner, ...settings } };
  const runner = new Runner({ ...tp.platform, config }, tp.driver, { id });
  inProcess.push(runner);
  await runner.start();
  return runner;
}

const sqliteFile = tp.platform.config.database.client === 'sqlite' ? tp.platform.config.database.filename : null;
if (sqliteFile) {
  // (first in the file: nothing is queued yet)
  queue('SQLite: an idle claim only reads, so another process holding the write lock does not block it (nor the event loop)', async () => {
    const other = new Database(sqliteFile);
    other.exec('BEGIN IMMEDIATE');
    try {
      const started = performance.now();
      const claimed = await claimBuilds(db, { runnerId: 'idle', limit: 4, leaseMs: 30_000, maxAttempts: 3 });
      const waited = performance.now() - started;
      assert.equal(claimed, []);
      // an UPDATE would wait for the lock up to busy_timeout (10 s), then fail with SQLITE_BUSY
      assert.ok(waited < 2000, `the idle claim waited ${Math.round(waited)} ms for the write lock`);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
  });
}

queue('leases live on the database clock, in the format the platform writes', async () => {
  const now = await dbNowMs(db);
  assert.ok(Math.abs(now - Date.now()) < 5000, `database clock ${new Date(now).toISOString()}`);
  const result = await knex.raw(`SELECT ${dbTimeSql(db, 1500)} AS later, ${dbTimeSql(db, -1500)} AS earlier`);
  const r = db.dialect === 'pg' ? result.rows[0] : result[0];
  if (db.dialect === 'sqlite') {
    // stored timestamps are compared as text on SQLite: the same ISO-8601 shape as nowIso()
    for (const v of [r.later, r.earlier]) assert.match(v, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(r.earlier < nowIso() && nowIso() < r.later, `${r.earlier} < now < ${r.later}`);
  }
  assert.ok(Math.abs(new Date(r.later).getTime() - new Date(r.earlier).getTime() - 3000) < 50);
});

queue('a claim whose lease ran out on the database clock is fenced, even against a re-claim by the same RUNNER_ID', async () => {
  const api = await tp.newUser();
  const d = await uploaded(api, 'fenced', await fn('fenced'));
  await d.complete();
  const claim = async () => (await claimBuilds(db, { runnerId: 'same-id', limit: 10, leaseMs: 600, maxAttempts: 3 })).find((b) => b.id === d.deploymentId);
  const first = (await claim())!;
  assert.ok(first, 'claimed');
  assert.is(first.attempts, 1);
  const old = { deploymentId: d.deploymentId, claimToken: first.claimToken };
  assert.ok(await renewLease(db, { ...old, leaseMs: 600 }));

  // the holder stops renewing: once its lease is over on the database clock, the build is taken back
  await waitFor('the lease to run out', async () => (await retryExpiredClaims(db, { maxAttempts: 3, retryBaseMs: 50 })) === 1, { timeoutMs: 10_000, intervalMs: 100 });
  assert.not.ok(await renewLease(db, { ...old, leaseMs: 600 }), 'the old claim cannot renew');
  const second = await waitFor('the retry to be claimable', () => claim(), { timeoutMs: 10_000 });
  assert.is.not(second.claimToken, first.claimToken);
  assert.is(second.attempts, 2);

  // the first claim — same runner id, same build — can do nothing to the build the second holds
  const policy = { maxAttempts: 3, retryBaseMs: 50, buildTimeoutMs: 60_000 };
  assert.equal(await finishBuild(db, { ...old, functionId: d.id, imageTag: null, driver: 'process', buildLogs: 'stale' }), { fenced: true });
  assert.equal(await failBuild(db, { ...old, functionId: d.id, failure: { kind: 'final', message: 'stale' }, buildLogs: 'stale', policy }), { fenced: true, willRetry: false });
  await releaseClaim(db, old);
  assert.not.ok(await renewLease(db, { ...old, leaseMs: 600_000 }));
  const held = await row(d.deploymentId);
  assert.equal([held.status, held.claimed_by, held.claim_token, Number(held.attempts)], ['building', 'same-id', second.claimToken, 2]);
  assert.not.match(held.build_logs ?? '', /stale/);

  const done = await finishBuild(db, { deploymentId: d.deploymentId, claimToken: second.claimToken, functionId: d.id, imageTag: null, driver: 'process', buildLogs: 'built by the second claim' });
  assert.is(done.fenced, false);
  const view = (await api.get(`/api/functions/${d.id}/deployments/1`)).body;
  assert.equal([view.status, view.attempts, view.error, view.nextAttemptAt, view.buildLogs], ['active', 2, null, null, 'built by the second claim']);
  assert.match(view.lastError, /attempt 1 was abandoned: runner same-id stopped renewing its lease/);
});

queue('two runner processes with the same RUNNER_ID: the one whose lease lapsed (paused) cannot touch the build the other holds', async () => {
  const api = await tp.newUser();
  const d = await uploaded(api, 'twins', await fn('twins'));
  const proxy = await startStallingProxy(tp.platform.embeddedS3!.endpoint, `/functions/${d.id}/v1/`);
  try {
    const env = runnerEnv(tp, { S3_ENDPOINT: proxy.url, RUNNER_LEASE_MS: '1500' });
    const a = spawnRunner('twin', env);
    runners.push(a);
    await d.complete();
    await proxy.untilHeld();
    const tokenA = (await row(d.deploymentId)).claim_token as string;
    // a stop-the-world pause (SIGSTOP): it cannot renew, its lease runs out, the other twin takes over
    a.child.kill('SIGSTOP');
    const b = spawnRunner('twin', env);
    runners.push(b);
    await waitFor('the other twin to hold the build', () => proxy.held() >= 2, { timeoutMs: 30_000 });
    const taken = await row(d.deploymentId);
    assert.is(taken.claimed_by, 'twin');
    assert.is.not(taken.claim_token, tokenA);
    const tokenB = taken.claim_token as string;

    // the first twin resumes: its next renewal finds the claim gone and it gives the build up
    a.child.kill('SIGCONT');
    await waitFor('the resumed twin to give up', () => a.output().includes('build abandoned: lease lost'), { timeoutMs: 20_000 });
    assert.is((await row(d.deploymentId)).claim_token, tokenB, 'the other claim is untouched');

    proxy.release();
    const built = await waitForBuild(api, d.id, 1, 60_000);
    assert.is(built.status, 'active', built.error ?? '');
    assert.match(built.buildLogs, new RegExp(`claim ${tokenB.slice(0, 8)}`));
    assert.not.match(built.buildLogs, new RegExp(`claim ${tokenA.slice(0, 8)}`));
    assert.is((await events(d.deploymentId, 'build_started')).length, 2);
    assert.is((await events(d.deploymentId, 'build_succeeded')).length, 1);
    assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).body.result.tag, 'twins');
  } finally {
    await proxy.close();
  }
});

/** Stops the platform's S3 (the test's outage); `restart` brings it back on the same port with the same data. */
function s3Outage() {
  const port = Number(new URL(tp.platform.embeddedS3!.endpoint).port);
  let restarted: EmbeddedS3 | undefined;
  return {
    stop: async () => {
      await (restarted ?? tp.platform.embeddedS3!).close();
      restarted = undefined;
    },
    restart: async () => {
      restarted = await startEmbeddedS3({ directory: path.join(tp.dataDir, 's3'), bucket: tp.platform.config.s3.bucket, port });
    },
  };
}
let outage: ReturnType<typeof s3Outage> | undefined;

queue('S3 down: queued builds back off without spending attempts, and all go live once it is back', async () => {
  const api = await tp.newUser();
  const deployed = await Promise.all([0, 1, 2, 3, 4].map(async (i) => deployPresigned(api, `outage-${i}`, await fn(`o${i}`))));
  const ids = deployed.map((d) => d.deploymentId as string);
  outage = s3Outage();
  await outage.stop();
  try {
    await startRunner('patient', { retryBaseMs: 200, concurrency: 5, maxAttempts: 3 });

    // more outage retries than there are attempts: before, all three attempts went in about a second
    await waitFor(
      'every build to have waited four times',
      async () => (await knex('function_deployments').whereIn('id', ids).select('outage_retries')).every((r) => Number(r.outage_retries) >= 4),
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const waiting = await knex('function_deployments').whereIn('id', ids);
    for (const r of waiting) {
      assert.is(r.status, 'building');
      assert.ok(Number(r.attempts) <= 1, `attempts ${r.attempts}: an outage spends none`);
      assert.match(r.last_error, /S3 GET .*(ECONNREFUSED|connect)/);
    }
    const delays = retryDelays(await events(ids[0]!, 'build_waiting'));
    assert.ok(delays.length >= 4, JSON.stringify(delays));
    for (let i = 0; i < 3; i++) {
      const nominal = 200 * 2 ** i;
      assert.ok(delays[i]! >= nominal * 0.8 - 1 && delays[i]! <= nominal * 1.2 + 1, `retry ${i + 1} waited ${delays[i]} ms`);
    }
    // the history shows when the next try comes and why
    const view = await waitFor('a build between two tries', async () => {
      const history = (await api.get(`/api/functions/${deployed[0].id}/deployments`)).body.deployments;
      return history.find((h: any) => h.nextAttemptAt !== null);
    }, { timeoutMs: 20_000, intervalMs: 20 });
    assert.match(view.lastError, /S3/);
    assert.ok(view.attempts <= 1);
  } finally {
    await outage.restart();
  }
  for (const d of deployed) {
    const built = await waitForBuild(api, d.id, 1, 60_000);
    assert.is(built.status, 'active', built.error ?? '');
    assert.is(built.isActive, true);
    assert.is(built.attempts, 1, 'only the attempt that succeeded counts');
    assert.is(built.error, null);
    assert.match(built.lastError, /S3/, 'the history keeps what the earlier tries ran into');
    assert.is(built.nextAttemptAt, null);
  }
  assert.is((await api.post(`/api/functions/${deployed[4].id}/invoke`, {})).body.result.tag, 'o4');
});

queue('an outage longer than BUILD_TIMEOUT_MS fails the build for good, naming the outage', async () => {
  const api = await tp.newUser();
  const d = await deployPresigned(api, 'long-outage', await fn('x'));
  outage ??= s3Outage();
  await outage.stop();
  try {
    await startRunner('bounded', { retryBaseMs: 200, buildTimeoutMs: 3000 });
    const failed = await waitForBuild(api, d.id, 1, 30_000);
    assert.is(failed.status, 'failed');
    assert.match(failed.error, /^S3 was unavailable for [\d.]+ s \(BUILD_TIMEOUT_MS 3 s\): S3 GET /);
    const waited = await events(d.deploymentId, 'build_waiting');
    assert.ok(waited.length >= 2, `${waited.length} waits`);
    const tries = new Date(waited.at(-1)!.created_at).getTime() - new Date(waited[0]!.created_at).getTime();
    assert.ok(tries < 4000, `the waits stayed within the build's time (${tries} ms)`);
  } finally {
    await outage.restart();
  }
});

queue('a failure of unknown cause spends attempts, retried after growing delays; the last attempt fails for good', async () => {
  const api = await tp.newUser();
  // A real fault, not a mock: a regular file where the process driver makes the function's
  // artifact directory, so its mkdir fails with EEXIST (a broken disk state, not the function's fault).
  const healed = await uploaded(api, 'heals', await fn('healed'));
  const broken = await uploaded(api, 'stays-broken', await fn('broken'));
  for (const d of [healed, broken]) {
    fs.mkdirSync(path.join(tp.dataDir, 'artifacts'), { recursive: true });
    fs.writeFileSync(path.join(tp.dataDir, 'artifacts', d.id), 'not a directory');
  }
  runners.push(spawnRunner('counting', runnerEnv(tp, { BUILD_RETRY_BASE_MS: '500', BUILD_MAX_ATTEMPTS: '3' })));
  await healed.complete();
  await broken.complete();
  // after the second failure, the third attempt is ~1 s away: heal one of them before it
  await waitFor('two failed attempts', async () => (await events(healed.deploymentId, 'build_retried')).length >= 2, { timeoutMs: 30_000, intervalMs: 20 });
  fs.rmSync(path.join(tp.dataDir, 'artifacts', healed.id));

  const built = await waitForBuild(api, healed.id, 1, 30_000);
  assert.is(built.status, 'active', built.error ?? '');
  assert.is(built.attempts, 3);
  assert.match(built.lastError, /EEXIST/);
  const retried = await events(healed.deploymentId, 'build_retried');
  assert.match(retried[0]!.message, /^attempt 1 of 3 of version 1 failed \(.*EEXIST.*\); retrying in/);
  const delays = retryDelays(retried);
  assert.ok(delays[0]! >= 400 && delays[0]! <= 600, `first wait ${delays[0]} ms`);
  assert.ok(delays[1]! >= 800 && delays[1]! <= 1200, `second wait ${delays[1]} ms`);
  const starts = (await events(healed.deploymentId, 'build_started')).map((e) => new Date(e.created_at).getTime());
  assert.is(starts.length, 3);
  assert.ok(starts[1]! - starts[0]! >= 400, `attempt 2 came ${starts[1]! - starts[0]!} ms after attempt 1`);
  assert.ok(starts[2]! - starts[1]! >= 800, `attempt 3 came ${starts[2]! - starts[1]!} ms after attempt 2`);

  const failed = await waitForBuild(api, broken.id, 1, 30_000);
  assert.is(failed.status, 'failed');
  assert.match(failed.error, /^build abandoned after 3 attempts; last error: .*EEXIST/);
  assert.is(failed.attempts, 3);
  assert.is((await events(broken.deploymentId, 'build_started')).length, 3);
});

queue.after(async () => {
  await tp.close();
  await outage?.stop(); // the S3 server the outage tests restarted
});
queue('the usage rows the quotas read agree with a recount, after the retries, requeues and outages above', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
});

queue.run();
