// Retention cleanup and recovery (process driver; the docker variant is retention-docker.test.ts):
// keep-last-N, the three archive modes, history kept, the live version untouchable, archived
// versions restorable, crash-safety, one run at a time, dry runs and expired uploads; versions still
// reachable (the candidate, tagged, a running canary's) are kept whatever their age.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCleanup, type CleanupOptions } from '../shared/domain/retention.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployAndBuild, waitForBuild } from './support/flows.ts';
import { runnerEnv, spawnCleanup, startStallingProxy } from './support/processes.ts';
import { waitFor } from './support/services.ts';
import type { Client } from './support/http.ts';
import { builtFunctionRows, insertInBatches } from '../scripts/bench/seed.ts';

// s3rver knows the classic storage classes only (no GLACIER_IR, the production default)
const t = await startTestPlatform({ KEEP_LAST_N: '3', CLEANUP_CRON: 'off', ARCHIVE_STORAGE_CLASS: 'STANDARD_IA', FUNCTION_IDLE_MS: '5000' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db.knex;
const fn = (tag: string) => makeNodeFunction(`export default async () => ({ tag: ${JSON.stringify(tag)} });`);
const cleanup = (opts: Partial<CleanupOptions> = {}) => runCleanup(tp.platform, tp.driver, opts);
const artifactDir = (id: string, v: number) => path.join(tp.dataDir, 'artifacts', id, `v${v}`);

/** A function with versions 1..n built in order (v_n live). */
async function builtVersions(api: Client, name: string, n: number) {
  let id = '';
  for (let v = 1; v <= n; v++) {
    const d = await deployAndBuild(api, name, await fn(`${name}-v${v}`));
    assert.is(d.built.status, 'active', d.built.error ?? '');
    id = d.id;
  }
  return id;
}

async function history(api: Client, id: string) {
  const res = await api.get(`/api/functions/${id}/deployments`);
  return new Map<number, any>(res.body.deployments.map((d: any) => [d.version, d]));
}

const keep = suite('keep-last-N');

for (const mode of ['prefix', 'storage-class', 'delete'] as const) {
  keep(`KEEP_LAST_N=3 with 8 built versions archives v1..v5 (ARCHIVE_MODE=${mode}); rows stay`, async () => {
    const api = await tp.newUser();
    const id = await builtVersions(api, `keep-${mode}`, 8);
    const before = await history(api, id);
    const summary = await cleanup({ archiveMode: mode, functionName: `keep-${mode}` });
    assert.is(summary.errors, 0);
    const after = await history(api, id);
    assert.is(after.size, 8, 'history keeps every row');
    for (let v = 1; v <= 8; v++) {
      const d = after.get(v);
      const key = before.get(v).s3Key as string;
      if (v >= 6) {
        assert.is(d.status, 'active', `v${v} kept`);
        assert.ok(fs.existsSync(artifactDir(id, v)), `v${v} artifact kept`);
        assert.ok(await tp.platform.storage.head(key), `v${v} archive kept in place`);
        continue;
      }
      assert.not.ok(fs.existsSync(artifactDir(id, v)), `v${v} artifact removed`);
      assert.ok(d.cleanupNote, `v${v} says what was removed`);
      assert.ok(d.archivedAt);
      if (mode === 'delete') {
        assert.is(d.status, 'deleted');
        assert.is(d.archiveKey, null);
        assert.is(await tp.platform.storage.head(key), null);
      } else if (mode === 'prefix') {
        assert.is(d.status, 'archived');
        assert.is(d.archiveKey, `archive/${key}`);
        assert.is(await tp.platform.storage.head(key), null, 'original removed');
        assert.ok(await tp.platform.storage.head(`archive/${key}`), 'moved under archive/');
      } else {
        assert.is(d.status, 'archived');
        assert.is(d.archiveKey, key);
        assert.is(d.archiveStorageClass, 'STANDARD_IA');
        assert.is((await tp.platform.storage.head(key))?.storageClass, 'STANDARD_IA');
      }
    }
    assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, `keep-${mode}-v8`);
    // a second run finds nothing more to do
    const again = await cleanup({ archiveMode: mode, functionName: `keep-${mode}` });
    assert.is(again.versionsArchived + again.archivesDeleted + again.errors, 0);
  });
}

keep('more versions than one batch: 2 functions × 1,300 versions, keep 3, each old version deleted and logged once', async () => {
  // rows written straight into the database, as the bench does: 2,594 versions are 3 batches
  const fnIds: string[] = [];
  for (let i = 0; i < 2; i++) {
    const userId = randomUUID();
    await db('users').insert({ id: userId, email: `batches-${userId}@example.com`, password_hash: 'x', created_at: new Date().toISOString() });
    const made = builtFunctionRows(userId, 'many-batches', 1300);
    await db('functions').insert(made.fn);
    await insertInBatches(db, 'function_deployments', made.deployments, 500);
    fnIds.push(made.fn.id);
  }
  const summary = await cleanup({ archiveMode: 'delete', functionName: 'many-batches' });
  assert.is(summary.errors, 0);
  assert.is(summary.archivesDeleted, 2594);
  assert.is(summary.objectsRemoved, 2594);
  const byStatus = await db('function_deployments').whereIn('function_id', fnIds).select('status').count({ n: '*' }).groupBy('status');
  assert.equal(Object.fromEntries(byStatus.map((r: any) => [r.status, Number(r.n)])), { active: 6, deleted: 2594 });
  const live = await db('function_deployments').whereIn('function_id', fnIds).andWhere('is_active', true).select('version');
  assert.equal(live.map((r: any) => Number(r.version)), [1300, 1300]);
  const events = await db('function_logs').whereIn('function_id', fnIds).andWhere('event', 'archive_deleted').select('deployment_id', 'message');
  assert.is(events.length, 2594);
  assert.is(new Set(events.map((e: any) => e.deployment_id)).size, 2594, 'one event per version');
  assert.match(events[0].message, /^version \d+ deleted by retention cleanup: unpacked artifact removed; archive deleted/);
  assert.is((await cleanup({ archiveMode: 'delete', functionName: 'many-batches' })).archivesDeleted, 0);
});

keep('the live version survives every run, whatever its age', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'old-but-live', 6);
  assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 2 })).status, 200);
  for (let run = 0; run < 3; run++) assert.is((await cleanup({ functionName: 'old-but-live' })).errors, 0);
  const h = await history(api, id);
  assert.is(h.get(2).status, 'active');
  assert.is(h.get(2).isActive, true);
  assert.is(h.get(1).status, 'archived');
  assert.ok(fs.existsSync(artifactDir(id, 2)));
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'old-but-live-v2');
});

keep('old failed versions lose their archive; newer failures and pending deploys are untouched', async () => {
  const api = await tp.newUser();
  const bad = await deployAndBuild(api, 'flaky', Buffer.from('not an archive')); // v1 failed
  assert.is(bad.built.status, 'failed');
  await builtVersions(api, 'flaky', 3); // v2..v4
  const pending = await api.post('/api/functions/deploy', { name: 'flaky', ...declaration() }); // v5 pending_upload
  const summary = await cleanup({ functionName: 'flaky' });
  assert.is(summary.failedArchivesRemoved, 1);
  const h = await history(api, bad.id);
  assert.is(h.get(1).status, 'failed');
  assert.is(h.get(1).archiveKey, null);
  assert.is(await tp.platform.storage.head(bad.built.s3Key), null);
  assert.is(h.get(5).status, 'pending_upload');
  assert.is(pending.status, 201);
});

// Tags and the candidate through the delivery API; a running canary as the row the canary API writes.
async function tagVersion(api: Client, functionId: string, tag: string, version: number) {
  const res = await api.request('PUT', `/api/functions/${functionId}/tags/${tag}`, { json: { version } });
  assert.is(res.status, 200, JSON.stringify(res.body));
}
async function untag(api: Client, functionId: string, tag: string) {
  assert.is((await api.del(`/api/functions/${functionId}/tags/${tag}`)).status, 204);
}
async function setCandidate(api: Client, functionId: string, version: number, percent: number) {
  const res = await api.request('PUT', `/api/functions/${functionId}/traffic`, { json: { candidate: { version, percent } } });
  assert.is(res.status, 200, JSON.stringify(res.body));
}
async function clearCandidate(api: Client, functionId: string) {
  assert.is((await api.del(`/api/functions/${functionId}/traffic`)).status, 200);
}
async function startCanaryRow(functionId: string, version: number) {
  const dep = await db('function_deployments').where({ function_id: functionId, version }).first('id');
  const now = new Date().toISOString();
  const id = randomUUID();
  await db('function_canaries').insert({
    id, function_id: functionId, deployment_id: dep.id, version, status: 'running',
    steps: '[5,25,50,100]', step_index: 0, interval_seconds: 60, max_error_rate: 0.05, min_requests: 20,
    step_started_at: now, created_at: now, updated_at: now,
  });
  return id;
}
const statuses = async (api: Client, id: string) => [...(await history(api, id))].map(([v, d]) => `v${v}:${d.status}`).sort().join(' ');

const reachable = suite('versions still reachable');

reachable('KEEP_LAST_N=1: a tagged old version and the candidate keep their image and are named; untagged, the next run archives', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'reachable', 5); // v5 live
  await tagVersion(api, id, 'beta', 1);
  await tagVersion(api, id, 'alpha', 1);
  await setCandidate(api, id, 3, 10);
  const first = await cleanup({ functionName: 'reachable', keepLastN: 1 });
  assert.is(first.errors, 0);
  assert.equal(first.kept, [
    { functionId: id, name: 'reachable', version: 3, reason: 'candidate' },
    { functionId: id, name: 'reachable', version: 1, reason: 'tagged:alpha,beta' },
  ]);
  assert.equal(first.plan.map((a) => `${a.action} v${a.version}`), ['archive v4', 'archive v2']);
  assert.is(await statuses(api, id), 'v1:active v2:archived v3:active v4:archived v5:active');
  for (const v of [1, 3, 5]) assert.ok(fs.existsSync(artifactDir(id, v)), `v${v} artifact kept`);

  await untag(api, id, 'beta');
  const second = await cleanup({ functionName: 'reachable', keepLastN: 1 });
  assert.equal(second.kept.map((k) => `v${k.version} ${k.reason}`), ['v3 candidate', 'v1 tagged:alpha'], 'still tagged alpha');
  await untag(api, id, 'alpha');
  const third = await cleanup({ functionName: 'reachable', keepLastN: 1 });
  assert.equal(third.kept.map((k) => `v${k.version} ${k.reason}`), ['v3 candidate']);
  assert.is(third.versionsArchived, 1);
  assert.is(await statuses(api, id), 'v1:archived v2:archived v3:active v4:archived v5:active');
  assert.not.ok(fs.existsSync(artifactDir(id, 1)));

  await clearCandidate(api, id);
  const fourth = await cleanup({ functionName: 'reachable', keepLastN: 1 });
  assert.equal(fourth.kept, []);
  assert.is(await statuses(api, id), 'v1:archived v2:archived v3:archived v4:archived v5:active');
});

reachable('the version of a running canary is kept; once the canary has ended it goes', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'canaried', 3);
  const canary = await startCanaryRow(id, 1);
  const during = await cleanup({ functionName: 'canaried', keepLastN: 1 });
  assert.equal(during.kept.map((k) => `v${k.version} ${k.reason}`), ['v1 canary']);
  assert.is(await statuses(api, id), 'v1:active v2:archived v3:active');
  await db('function_canaries').where({ id: canary }).update({ status: 'aborted', finished_at: new Date().toISOString() });
  const after = await cleanup({ functionName: 'canaried', keepLastN: 1 });
  assert.equal(after.kept, []);
  assert.is(await statuses(api, id), 'v1:archived v2:archived v3:active');
});

reachable('the dry run and the report name what was kept and why', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'named', 4);
  await tagVersion(api, id, 'stable', 1);
  await setCandidate(api, id, 2, 0);
  const dry = spawnCleanup(['--dry-run', '--keep', '1', '--function', 'named'], runnerEnv(tp));
  assert.is(await dry.exited, 0, dry.stderr());
  assert.match(dry.stdout(), /dry run: 1 action\(s\) planned/);
  assert.match(dry.stdout(), /archive\s+named v3\n/);
  assert.match(dry.stdout(), /kept\s+named v2 \(candidate\)\n/);
  assert.match(dry.stdout(), /kept\s+named v1 \(tagged:stable\)\n/);
  assert.match(dry.stdout(), /versions kept 2,/);
  const real = spawnCleanup(['--keep', '1', '--function', 'named'], runnerEnv(tp));
  assert.is(await real.exited, 0, real.stderr());
  assert.match(real.stdout(), /kept\s+named v2 \(candidate\)\n/);
  assert.match(real.stdout(), /versions archived 1,.*versions kept 2,/);
  const json = spawnCleanup(['--keep', '1', '--function', 'named', '--json'], runnerEnv(tp));
  assert.is(await json.exited, 0, json.stderr());
  assert.equal(JSON.parse(json.stdout()).kept.map((k: any) => [k.version, k.reason]), [[2, 'candidate'], [1, 'tagged:stable']]);
  assert.is(await statuses(api, id), 'v1:active v2:active v3:archived v4:active');
});

reachable('a rollback, a candidate and a tag made after the plan, before the bulk claim, still protect their versions', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'late-change', 5); // v5 live
  let planned: string[] = [];
  const summary = await cleanup({
    functionName: 'late-change',
    keepLastN: 1,
    // the plan (v4, v3, v2, v1) is made; each change below takes the function's lock before the claim does
    beforeClaim: async (batch) => {
      planned = batch.map((a) => `${a.action} v${a.version}`);
      assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 4 })).status, 200);
      await setCandidate(api, id, 3, 0);
      await tagVersion(api, id, 'late', 2);
    },
  });
  assert.equal(planned, ['archive v4', 'archive v3', 'archive v2', 'archive v1']);
  assert.is(summary.errors, 0);
  assert.equal(summary.kept.map((k) => `v${k.version} ${k.reason}`), ['v3 candidate', 'v2 tagged:late']);
  assert.is(summary.versionsArchived, 1);
  assert.is(await statuses(api, id), 'v1:archived v2:active v3:active v4:active v5:active');
  for (const v of [2, 3, 4, 5]) assert.ok(fs.existsSync(artifactDir(id, v)), `v${v} artifact kept`);
  assert.not.ok(fs.existsSync(artifactDir(id, 1)));
  const inv = await api.post(`/api/functions/${id}/invoke`, {});
  assert.is(inv.body.result.tag, 'late-change-v4');
  assert.is((await api.post(`/api/functions/${id}/invoke?tag=late`, {})).body.result.tag, 'late-change-v2');
});

reachable('a deploy during a cleanup goes live; the cleanup archives only what it planned, the next run the rest', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'busy', 3); // v3 live
  const summary = await cleanup({
    functionName: 'busy',
    keepLastN: 1,
    beforeClaim: async () => {
      const d = await deployAndBuild(api, 'busy', await fn('busy-v4'));
      assert.is(d.built.status, 'active', d.built.error ?? '');
    },
  });
  assert.is(summary.errors, 0);
  assert.equal(summary.plan.map((a) => `${a.action} v${a.version}`), ['archive v2', 'archive v1']);
  assert.is(await statuses(api, id), 'v1:archived v2:archived v3:active v4:active');
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'busy-v4');
  const next = await cleanup({ functionName: 'busy', keepLastN: 1 });
  assert.is(next.versionsArchived, 1);
  assert.is(await statuses(api, id), 'v1:archived v2:archived v3:archived v4:active');
  assert.ok(fs.existsSync(artifactDir(id, 4)));
});

reachable('while its batch is being archived, a version refuses a tag and a rollback (409); the live one is untouched', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'in-flight', 4); // v4 live
  // the whole batch (v3, v2, v1) is claimed at once; the run is held on v3's archive copy
  const proxy = await startStallingProxy(
    tp.platform.embeddedS3!.endpoint,
    (req) => req.method === 'PUT' && Boolean(req.url?.includes('/v3/')) && Boolean(req.headers['x-amz-copy-source']),
  );
  try {
    const run = spawnCleanup(['--keep', '1', '--function', 'in-flight'], runnerEnv(tp, { S3_ENDPOINT: proxy.url }));
    await waitFor('the copy of v3 to be held', () => proxy.held() > 0, { timeoutMs: 30_000 });
    const tag = await api.request('PUT', `/api/functions/${id}/tags/late`, { json: { version: 1 } });
    assert.is(tag.status, 409, JSON.stringify(tag.body));
    assert.is(tag.body.error.code, 'version_not_built');
    const rb = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
    assert.is(rb.status, 409, JSON.stringify(rb.body));
    assert.match(rb.body.error.message, /being archived/);
    assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'in-flight-v4');
    proxy.release();
    assert.is(await run.exited, 0, run.stderr() + run.stdout());
    assert.match(run.stdout(), /versions archived 3,/);
  } finally {
    await proxy.close();
  }
  assert.is(await statuses(api, id), 'v1:archived v2:archived v3:archived v4:active');
  // archived, the version is one rollback (a rebuild) away again
  assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 1 })).status, 202);
  assert.is((await waitForBuild(api, id, 1)).status, 'active');
});

const restore = suite('bringing a version back');

restore('rollback to an archived version answers 202, rebuilds it, then serves it', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'phoenix', 5);
  await cleanup({ functionName: 'phoenix' });
  assert.is((await history(api, id)).get(1).status, 'archived');
  const res = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(res.status, 202);
  assert.is(res.body.status, 'building');
  assert.is(res.body.version, 1);
  const built = await waitForBuild(api, id, 1);
  assert.is(built.status, 'active', built.error ?? '');
  assert.is(built.isActive, true);
  const inv = await api.post(`/api/functions/${id}/invoke`, {});
  assert.is(inv.body.result.tag, 'phoenix-v1');
  assert.is(inv.body.version, 1);
});

restore('a restore never overrides a version activated after it was requested', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'second-thoughts', 5);
  await cleanup({ functionName: 'second-thoughts' });
  // restore v1 is requested while no runner can build (claimed by a stopped one), then v4 chosen
  assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 1 })).status, 202);
  assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 4 })).status, 200);
  const built = await waitForBuild(api, id, 1);
  assert.is(built.status, 'active');
  assert.is(built.isActive, false, 'v1 rebuilt, not live');
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 4);
});

restore('a deleted version is a 409 that says its archive is gone', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'forgotten', 4);
  await cleanup({ functionName: 'forgotten', archiveMode: 'delete' });
  const res = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(res.status, 409);
  assert.is(res.body.error.code, 'archive_gone');
  assert.match(res.body.error.message, /archive/);
});

restore('an artifact removed by hand: the caller gets 503 image_rebuilding, then it serves again', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'vanishing', await fn('still-here'));
  // a warm instance that has loaded the function would go on serving it: start from none (once the
  // pre-warmed one is up, so none is started after this)
  await waitFor('the pre-warmed instance', () => tp.invoker.manager.list(d.id).some((i) => i.state === 'idle'));
  await tp.invoker.manager.dropFunction(d.id);
  fs.rmSync(artifactDir(d.id, 1), { recursive: true, force: true });
  const first = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(first.status, 503);
  assert.is(first.body.error.code, 'image_rebuilding');
  const back = await waitFor('the rebuilt version to answer', async () => {
    const res = await api.post(`/api/functions/${d.id}/invoke`, {});
    if (res.status !== 200 && res.status !== 503) throw new Error(`unexpected ${res.status}`);
    return res.status === 200 ? res : undefined;
  });
  assert.is(back.body.result.tag, 'still-here');
  assert.is((await api.get(`/api/functions/${d.id}`)).body.activeVersion, 1);
});

const safety = suite('safety');

safety('--dry-run prints the plan and changes nothing', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'dry', 5);
  const rowsBefore = await db('function_deployments').where({ function_id: id }).orderBy('version');
  const run = spawnCleanup(['--dry-run', '--keep', '2', '--function', 'dry'], runnerEnv(tp));
  assert.is(await run.exited, 0, run.stderr());
  assert.match(run.stdout(), /dry run: 3 action\(s\) planned/);
  assert.match(run.stdout(), /archive\s+dry v1/);
  const rowsAfter = await db('function_deployments').where({ function_id: id }).orderBy('version');
  assert.equal(rowsAfter, rowsBefore);
  for (let v = 1; v <= 5; v++) assert.ok(fs.existsSync(artifactDir(id, v)));
});

safety('a cleanup killed half-way, then re-run, finishes with no orphans and no dangling rows', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'interrupted', 7);
  const keys = (await db('function_deployments').where({ function_id: id }).orderBy('version')).map((r) => r.s3_key);
  // S3 through a proxy that holds the copy of v3's archive: the process is mid-run when killed
  const proxy = await startStallingProxy(
    tp.platform.embeddedS3!.endpoint,
    (req) => req.method === 'PUT' && Boolean(req.url?.includes('/v3/')) && Boolean(req.headers['x-amz-copy-source']),
  );
  try {
    const run = spawnCleanup(['--keep', '2', '--function', 'interrupted'], runnerEnv(tp, { S3_ENDPOINT: proxy.url }));
    await waitFor('the copy of v3 to be held', () => proxy.held() > 0, { timeoutMs: 30_000 });
    run.child.kill('SIGKILL');
    await run.exited;
  } finally {
    await proxy.close();
  }
  const mid = await db('function_deployments').where({ function_id: id }).orderBy('version');
  assert.is(mid.find((r) => r.version === 3).status, 'archiving', 'v3 was mid-way');
  const rerun = spawnCleanup(['--keep', '2', '--function', 'interrupted'], runnerEnv(tp));
  assert.is(await rerun.exited, 0, rerun.stderr() + rerun.stdout());
  const h = await history(api, id);
  for (let v = 1; v <= 5; v++) {
    assert.is(h.get(v).status, 'archived', `v${v}`);
    assert.is(await tp.platform.storage.head(keys[v - 1]), null, `v${v} original gone`);
    assert.ok(await tp.platform.storage.head(`archive/${keys[v - 1]}`), `v${v} archive present`);
    assert.not.ok(fs.existsSync(artifactDir(id, v)), `v${v} artifact gone`);
  }
  for (const v of [6, 7]) {
    assert.is(h.get(v).status, 'active');
    assert.ok(fs.existsSync(artifactDir(id, v)));
  }
  // every archived row points at an object that exists, and can be brought back
  assert.is((await api.post(`/api/functions/${id}/rollback`, { version: 3 })).status, 202);
  assert.is((await waitForBuild(api, id, 3)).status, 'active');
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'interrupted-v3');
});

safety('killed after the batch delete and before the record: the re-run records the moves, once', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'half-recorded', 4);
  const rows = await db('function_deployments').where({ function_id: id }).orderBy('version');
  // v1: claimed, copied, original deleted (the DeleteObjects went through); v2: claimed and
  // copied, original still there (killed before the delete); v3: claimed only
  for (const r of rows.slice(0, 3)) await db('function_deployments').where({ id: r.id }).update({ status: 'archiving' });
  for (const r of rows.slice(0, 2)) await tp.platform.storage.copy(r.s3_key, `archive/${r.s3_key}`);
  await tp.platform.storage.delete(rows[0].s3_key);
  const summary = await cleanup({ functionName: 'half-recorded', keepLastN: 1 });
  assert.is(summary.errors, 0);
  assert.equal(summary.plan.map((a) => `${a.action} v${a.version}`).sort(), ['resume-archive v1', 'resume-archive v2', 'resume-archive v3']);
  assert.is(summary.versionsArchived, 3);
  const h = await history(api, id);
  for (let v = 1; v <= 3; v++) {
    const key = rows[v - 1].s3_key as string;
    assert.is(h.get(v).status, 'archived', `v${v}`);
    assert.is(h.get(v).archiveKey, `archive/${key}`);
    assert.is(await tp.platform.storage.head(key), null, `v${v} original gone`);
    assert.ok(await tp.platform.storage.head(`archive/${key}`), `v${v} archive present`);
  }
  const events = (await api.get(`/api/functions/${id}/logs`)).body.logs.filter((l: any) => l.event === 'archived');
  assert.equal(events.map((e: any) => e.version).sort(), [1, 2, 3]);
  assert.is((await cleanup({ functionName: 'half-recorded', keepLastN: 1 })).versionsArchived, 0);
});

safety('two cleanups at once: one works, the other stands aside', async () => {
  const api = await tp.newUser();
  await builtVersions(api, 'twice', 6);
  const [a, b] = await Promise.all([
    cleanup({ functionName: 'twice', holder: 'first' }),
    cleanup({ functionName: 'twice', holder: 'second' }),
  ]);
  assert.is([a, b].filter((s) => s.skipped).length, 1, 'exactly one ran');
  const ran = a.skipped ? b : a;
  assert.is(ran.versionsArchived, 3);
  assert.is(ran.errors, 0);
});

safety('a rollback racing a cleanup: the live version always keeps its artifact', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'racer', 8);
  // rollbacks to every candidate version, concurrently with the run that would archive them
  const [summary, ...rollbacks] = await Promise.all([
    cleanup({ functionName: 'racer' }),
    ...[5, 4, 3, 2, 1].map((v) => api.post(`/api/functions/${id}/rollback`, { version: v })),
  ]);
  assert.is(summary.errors, 0);
  for (const r of rollbacks) assert.ok([200, 202, 409].includes(r.status), `rollback answered ${r.status}`);
  const live = await db('function_deployments').where({ function_id: id }).andWhere('is_active', true);
  assert.is(live.length, 1);
  if (live[0].status === 'building') await waitForBuild(api, id, live[0].version);
  const res = await api.post(`/api/functions/${id}/invoke`, {});
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.is(res.body.version, Number(live[0].version));
  assert.ok(fs.existsSync(artifactDir(id, Number(live[0].version))));
});

safety('uploads that never completed expire after the URL lifetime plus the grace period', async () => {
  // 3 s: long enough that the first cleanup below normally runs before either URL expires, on a
  // loaded CI machine too; the check is exact whatever the timing (see below).
  const short = await startTestPlatform({ UPLOAD_URL_TTL_SECONDS: '3', UPLOAD_EXPIRY_GRACE_SECONDS: '0', CLEANUP_CRON: 'off' });
  try {
    const api = await short!.newUser();
    const body = await fn('x');
    const uploaded = await api.post('/api/functions/deploy', { name: 'abandoned', ...declaration(body) });
    const put = await fetch(uploaded.body.upload.url, { method: 'PUT', headers: uploaded.body.upload.headers, body });
    assert.is(put.status, 200);
    const never = await api.post('/api/functions/deploy', { name: 'abandoned', ...declaration() });
    const fresh = await runCleanup(short!.platform, short!.driver, {});
    const ranBy = Date.now();
    // Only an upload whose URL had expired when the run ended may go; neither may go when both were valid.
    const expiredBy = [uploaded, never].filter((u) => Date.parse(u.body.upload.expiresAt) < ranBy).length;
    assert.ok(fresh.uploadsExpired <= expiredBy, `not before the URL expires (${fresh.uploadsExpired} expired, ${expiredBy} URLs past expiry)`);
    const expiresAt = Date.parse(never.body.upload.expiresAt);
    await waitFor('the upload URLs to expire', () => Date.now() > expiresAt + 50, { timeoutMs: 5000 });
    const summary = await runCleanup(short!.platform, short!.driver, {});
    assert.is(summary.uploadsExpired, 2);
    for (const v of [1, 2]) {
      const d = (await api.get(`/api/functions/${uploaded.body.id}/deployments/${v}`)).body;
      assert.is(d.status, 'failed');
      assert.is(d.error, 'upload expired');
      assert.is(await short!.platform.storage.head(d.s3Key), null);
    }
    const logs = (await api.get(`/api/functions/${uploaded.body.id}/logs`)).body.logs.map((l: any) => l.event);
    assert.ok(logs.includes('upload_expired'));
  } finally {
    await short!.close();
  }
});

safety('the runner schedules cleanup with node-cron (CLEANUP_CRON with seconds)', async () => {
  const scheduled = await startTestPlatform({ KEEP_LAST_N: '1', CLEANUP_CRON: '*/1 * * * * *' }, { runner: true });
  try {
    const { CleanupSchedule } = await import('../runner/cleanup-schedule.ts');
    const schedule = new CleanupSchedule(scheduled!.platform, scheduled!.driver, 'scheduled-test');
    schedule.start();
    try {
      const api = await scheduled!.newUser();
      const id = await (async () => {
        let fid = '';
        for (let v = 1; v <= 2; v++) fid = (await deployAndBuild(api, 'cron', await fn(`v${v}`))).id;
        return fid;
      })();
      await waitFor('the scheduled run to archive v1', async () => (await history(api, id)).get(1)?.status === 'archived', {
        timeoutMs: 15_000,
      });
    } finally {
      await schedule.stop();
    }
  } finally {
    await scheduled!.close();
  }
});

safety.after(() => tp.close());
keep.run();
reachable.run();
restore.run();
safety('the usage rows the quotas read agree with a recount, after cleanup, restores and deletes above', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
  assert.ok(counted.archiveBytes > 0, 'and stored archives');
});

safety.run();
