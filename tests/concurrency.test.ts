// Version numbers are allocated under a lock: concurrent deploys (through one API or several
// replicas sharing the database) never share, skip or reuse a number.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { client, type Client } from './support/http.ts';
import { declaration } from './support/flows.ts';
import { randomUUID } from 'node:crypto';
import { allocateVersion, type AllocateInput } from '../shared/domain/versions.ts';
import { claimBuilds, failBuild } from '../shared/domain/build-queue.ts';
import { runCleanup } from '../shared/domain/retention.ts';
import { withRequestId } from '../shared/observability/request-context.ts';
import { isAppError } from '../shared/errors.ts';
import { metricsOf } from '../shared/observability/metrics.ts';

const t = await startTestPlatform();
if (!t) process.exit(0);
const tp = t as TestPlatform;

const alloc = suite('version allocation');

alloc('50 concurrent deploys of a brand-new name: one function, versions exactly 1..50', async () => {
  const api = await tp.newUser();
  const replies = await Promise.all(
    Array.from({ length: 50 }, () => api.post('/api/functions/deploy', { name: 'stampede', ...declaration() })),
  );
  for (const r of replies) assert.is(r.status, 201, JSON.stringify(r.body));
  const ids = new Set(replies.map((r) => r.body.id));
  assert.is(ids.size, 1, 'one function');
  assert.equal(replies.map((r) => r.body.version).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.is(replies.filter((r) => r.body.isNewFunction).length, 1, 'exactly one request created it');
  const fns = await tp.platform.db.knex('functions').where({ user_id: api.userId });
  assert.is(fns.length, 1);
  assert.is(Number(fns[0].last_version), 50);
  const keys = new Set(replies.map((r) => new URL(r.body.upload.url).pathname));
  assert.is(keys.size, 50, 'every version has its own archive key');
});

alloc('two API replicas on one database: 60 concurrent deploys, no duplicate, no gap', async () => {
  const replica = await tp.replica();
  try {
    const api = await tp.newUser();
    const viaReplica = client(replica.url, api.token);
    const replies = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? api : viaReplica).post('/api/functions/deploy', { name: 'replicated', ...declaration() })),
    );
    for (const r of replies) assert.is(r.status, 201, JSON.stringify(r.body));
    assert.is(new Set(replies.map((r) => r.body.id)).size, 1);
    assert.equal(replies.map((r) => r.body.version).sort((a, b) => a - b), Array.from({ length: 60 }, (_, i) => i + 1));
  } finally {
    await replica.close();
  }
});

alloc('failed versions keep their numbers: the next deploy never reuses one', async () => {
  const api = await tp.newUser();
  const first = await api.post('/api/functions/deploy', { name: 'gaps', ...declaration() });
  await api.post('/api/functions/deploy', { name: 'gaps', ...declaration() });
  await tp.platform.db.knex('function_deployments').where({ function_id: first.body.id, version: 2 }).update({ status: 'failed' });
  const third = await api.post('/api/functions/deploy', { name: 'gaps', ...declaration() });
  assert.is(third.body.version, 3);
});

alloc('a deploy that waited for the function\'s lock inherits the configuration of the version committed just before it', async () => {
  // PostgreSQL reads the latest configuration in the statement that takes the function's lock, in
  // a snapshot from before any wait for it: a version allocated by the lock's holder (no quota on,
  // so no account lock) is not in that snapshot, and must be read again.
  const api = await tp.newUser();
  const first = await api.post('/api/functions/deploy', { name: 'inherit', ...declaration(), config: { env: { WHO: 'first' } } });
  assert.is(first.status, 201, JSON.stringify(first.body));
  const knex = tp.platform.db.knex;
  const holder = await knex.transaction();
  let waiting: Promise<unknown> | undefined;
  try {
    // what an allocation does: the function's row locked by its increment, the version inserted
    await holder('functions').where({ id: first.body.id }).update({ last_version: 2 });
    const v1 = await holder('function_deployments').where({ function_id: first.body.id, version: 1 }).first();
    await holder('function_deployments').insert({ ...v1, id: randomUUID(), version: 2, s3_key: `held/${randomUUID()}`, config: JSON.stringify({ env: { WHO: 'held' } }) });
    waiting = allocateVersion(tp.platform.db, { userId: api.userId, name: 'inherit', status: 'pending_upload' });
    if (tp.platform.db.dialect === 'pg') {
      // until the allocation waits for the row lock (its snapshot is then taken)
      for (let i = 0; ; i++) {
        const { rows } = await knex.raw("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
        if (rows[0].n > 0) break;
        if (i > 200) throw new Error('the allocation never waited for the lock');
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    // SQLite: the holder has the pool's one connection, so the allocation waits for it whenever
    // it starts: there is no snapshot to take early
    await holder.commit();
  } catch (err) {
    await holder.rollback();
    throw err;
  }
  const allocated = (await waiting) as Awaited<ReturnType<typeof allocateVersion>>;
  assert.is(Number(allocated.deployment.version), 3);
  assert.equal(JSON.parse(allocated.deployment.config as string), { env: { WHO: 'held' } });
});

// SQLite has one writer at a time (its write lock is every lock): there the case is reported as skipped
(tp.platform.db.dialect === 'pg' ? alloc : alloc.skip)("PostgreSQL: a deploy of an existing function does not wait for the account's lock; a new function's does", async () => {
  const api = await tp.newUser();
  const existing = await api.post('/api/functions/deploy', { name: 'side-by-side', ...declaration() });
  assert.is(existing.status, 201, JSON.stringify(existing.body));
  const knex = tp.platform.db.knex;
  // the account's lock, as a complete or a new function's deploy holds it
  const holder = await knex.transaction();
  let created: Promise<{ status: number; body: any }> | undefined;
  try {
    await holder.raw('SELECT id FROM users WHERE id = ? FOR NO KEY UPDATE', [api.userId]);
    // bounded: before this change it waited for the holder, which waits for it
    const again = await Promise.race([
      api.post('/api/functions/deploy', { name: 'side-by-side', ...declaration() }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the deploy waited for the account's lock")), 5_000).unref()),
    ]);
    assert.is(again.status, 201, JSON.stringify(again.body));
    assert.is(again.body.version, 2, 'allocated while the account was locked');
    created = api.post('/api/functions/deploy', { name: 'brand-new', ...declaration() });
    // the new function's deploy waits for the account's lock (its functions are counted exactly)
    for (let i = 0; ; i++) {
      const { rows } = await knex.raw("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
      if (rows[0].n > 0) break;
      if (i > 200) throw new Error("the new function's deploy never waited for the account's lock");
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.is(await knex('functions').where({ user_id: api.userId, name: 'brand-new' }).first(), undefined, 'not created while the lock is held');
    await holder.commit();
  } catch (err) {
    await holder.rollback();
    throw err;
  }
  const made = await created!;
  assert.is(made.status, 201, JSON.stringify(made.body));
  assert.is(made.body.version, 1);
  assert.ok(made.body.isNewFunction);
});

alloc('8 concurrent completes of one upload, through two replicas: queued once, one event, every answer 202', async () => {
  const replica = await tp.replica();
  try {
    const api = await tp.newUser();
    const viaReplica = client(replica.url, api.token);
    const archive = Buffer.from('an archive completed by many at once');
    const res = await api.post('/api/functions/deploy', { name: 'completed-once', ...declaration(archive) });
    assert.is(res.status, 201, JSON.stringify(res.body));
    const put = await fetch(res.body.upload.url, { method: res.body.upload.method, headers: res.body.upload.headers, body: archive });
    assert.is(put.status, 200);
    const path = `/api/functions/${res.body.id}/deployments/${res.body.version}/complete`;
    const replies = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? api : viaReplica).post(path)));
    for (const r of replies) {
      assert.is(r.status, 202, JSON.stringify(r.body));
      assert.is(r.body.status, 'building');
    }
    const db = tp.platform.db.knex;
    const row = await db('function_deployments').where({ id: res.body.deploymentId }).first();
    assert.is(row.status, 'building');
    assert.is(Number(row.archive_size), archive.length);
    const events = await db('function_logs').where({ function_id: res.body.id, event: 'upload_completed' });
    assert.is(events.length, 1, 'one request queued it; the others answered what it had become');
  } finally {
    await replica.close();
  }
});

alloc.after(() => tp.close());
// Deploys asked for together are allocated together: in one transaction of savepoints on SQLite
// (sqliteGroupImmediate), in one transaction of two round trips on PostgreSQL (versions.ts). The
// invariants hold across a group as between deploys alone.

/** Each function's versions, as allocated (version order), with what each recorded. */
async function versionsOf(userId: string) {
  const rows = await tp.platform.db
    .knex('function_deployments as d')
    .join('functions as f', 'f.id', 'd.function_id')
    .where('f.user_id', userId)
    .select('f.name', 'f.last_version', 'd.version', 'd.request_id', 'd.config', ...(tp.platform.db.dialect === 'pg' ? [tp.platform.db.knex.raw('d.xmin::text AS xmin')] : []))
    .orderBy([{ column: 'f.name' }, { column: 'd.version' }]);
  const byName = new Map<string, typeof rows>();
  for (const r of rows) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  return byName;
}

/** allocateVersion for each of `inputs`, all asked for in this turn, each on behalf of its own request id. */
function allocateTogether(inputs: (Omit<AllocateInput, 'status'> & { requestId: string })[]) {
  return Promise.allSettled(inputs.map(({ requestId, ...input }) => withRequestId(requestId, () => allocateVersion(tp.platform.db, { status: 'pending_upload', ...input }))));
}

async function existingFunctions(api: { post: (...a: any[]) => Promise<any> }, names: string[]) {
  for (const name of names) {
    const r = await api.post('/api/functions/deploy', { name, ...declaration() });
    assert.is(r.status, 201, JSON.stringify(r.body));
  }
}

alloc('deploys of 8 functions through two replicas at once, 12 each: versions 1..13 for every function, each recorded with its own request id', async () => {
  const replica = await tp.replica();
  try {
    const api = await tp.newUser();
    const viaReplica = client(replica.url, api.token);
    const names = Array.from({ length: 8 }, (_, i) => `grouped-${i}`);
    await existingFunctions(api, names);
    const asked = names.flatMap((name) => Array.from({ length: 12 }, (_, k) => ({ name, requestId: `req-${name}-${k}` })));
    const replies = await Promise.all(
      asked.map((a, i) => (i % 2 ? api : viaReplica).post('/api/functions/deploy', { name: a.name, ...declaration() }, { headers: { 'x-request-id': a.requestId } })),
    );
    for (const r of replies) assert.is(r.status, 201, JSON.stringify(r.body));
    const versions = await versionsOf(api.userId);
    for (const name of names) {
      const rows = versions.get(name)!;
      assert.equal(rows.map((r) => Number(r.version)), Array.from({ length: 13 }, (_, i) => i + 1), name);
      assert.is(Number(rows[0]!.last_version), 13);
      const recorded = rows.slice(1).map((r) => r.request_id).sort();
      assert.equal(recorded, asked.filter((a) => a.name === name).map((a) => a.requestId).sort(), `${name}: each version has its own request's id`);
    }
    // every answer names the version its request was given
    const answered = new Set(replies.map((r) => `${r.body.name ?? ''}${r.body.id}:${r.body.version}`));
    assert.is(answered.size, replies.length);
  } finally {
    await replica.close();
  }
});

alloc("deploys asked for in one turn: one function's second is planned on its first's configuration, and each records its own request id", async () => {
  const api = await tp.newUser();
  const names = ['turn-a', 'turn-b', 'turn-c'];
  await existingFunctions(api, names);
  const outcomes = await allocateTogether([
    { userId: api.userId, name: 'turn-a', requestId: 'r-a1', config: { patch: { env: { STEP: 'one' } }, sealer: tp.platform.secrets, platform: tp.platform.config } },
    { userId: api.userId, name: 'turn-b', requestId: 'r-b1' },
    { userId: api.userId, name: 'turn-a', requestId: 'r-a2' },
    { userId: api.userId, name: 'turn-c', requestId: 'r-c1' },
    { userId: api.userId, name: 'turn-a', requestId: 'r-a3', config: { patch: { env: { MORE: 'yes' } }, sealer: tp.platform.secrets, platform: tp.platform.config } },
    { userId: api.userId, name: 'turn-b', requestId: 'r-b2' },
  ]);
  for (const o of outcomes) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
  const versions = await versionsOf(api.userId);
  const a = versions.get('turn-a')!;
  assert.equal(a.map((r) => [Number(r.version), r.request_id]), [[1, a[0]!.request_id], [2, 'r-a1'], [3, 'r-a2'], [4, 'r-a3']]);
  assert.equal(JSON.parse(a[2]!.config).env, { STEP: 'one' }, "the second inherits the first's configuration");
  assert.equal(JSON.parse(a[3]!.config).env, { STEP: 'one', MORE: 'yes' });
  assert.equal(versions.get('turn-b')!.map((r) => [Number(r.version), r.request_id]).slice(1), [[2, 'r-b1'], [3, 'r-b2']]);
  if (tp.platform.db.dialect === 'pg') {
    // PostgreSQL: the six committed in one transaction (one xmin), not one each
    const xmins = new Set([...versions.values()].flatMap((rows) => rows.slice(1).map((r) => r.xmin)));
    assert.is(xmins.size, 1, `one transaction for the turn's deploys, got ${xmins.size}`);
  }
});

alloc('a deploy refused inside a group (a bad configuration) spends no number and refuses no other', async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['refusal-a', 'refusal-b']);
  const outcomes = await allocateTogether([
    { userId: api.userId, name: 'refusal-a', requestId: 'ok-a' },
    { userId: api.userId, name: 'refusal-b', requestId: 'bad-b', config: { patch: { minInstances: 3, maxInstances: 1 }, sealer: tp.platform.secrets, platform: tp.platform.config } },
    { userId: api.userId, name: 'refusal-b', requestId: 'ok-b' },
    { userId: api.userId, name: 'refusal-a', requestId: 'ok-a2' },
  ]);
  assert.is(outcomes[1]!.status, 'rejected');
  const reason = (outcomes[1] as PromiseRejectedResult).reason;
  assert.ok(isAppError(reason) && reason.status === 400, `a validation error, got ${String(reason)}`);
  for (const i of [0, 2, 3]) assert.is(outcomes[i]!.status, 'fulfilled', String((outcomes[i] as PromiseRejectedResult).reason));
  const versions = await versionsOf(api.userId);
  assert.equal(versions.get('refusal-a')!.map((r) => r.request_id).slice(1), ['ok-a', 'ok-a2']);
  assert.equal(versions.get('refusal-b')!.map((r) => [Number(r.version), r.request_id]).slice(1), [[2, 'ok-b']], 'no number spent on the refused one');
  assert.is(Number(versions.get('refusal-b')![0]!.last_version), 2);
});

alloc("a group the database refuses (one function's next version already taken): that deploy fails, the others are allocated", async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['broken', 'fine-1', 'fine-2']);
  const knex = tp.platform.db.knex;
  const broken = await knex('functions').where({ user_id: api.userId, name: 'broken' }).first();
  const v1 = await knex('function_deployments').where({ function_id: broken.id, version: 1 }).first();
  // a row the function's counter does not know of: its next allocation breaks the unique (function_id, version)
  await knex('function_deployments').insert({ ...v1, id: randomUUID(), version: 2, s3_key: `stray/${randomUUID()}` });
  const outcomes = await allocateTogether([
    { userId: api.userId, name: 'fine-1', requestId: 'f1' },
    { userId: api.userId, name: 'broken', requestId: 'broken' },
    { userId: api.userId, name: 'fine-2', requestId: 'f2' },
  ]);
  assert.is(outcomes[1]!.status, 'rejected');
  assert.is(outcomes[0]!.status, 'fulfilled', String((outcomes[0] as PromiseRejectedResult).reason));
  assert.is(outcomes[2]!.status, 'fulfilled', String((outcomes[2] as PromiseRejectedResult).reason));
  const versions = await versionsOf(api.userId);
  assert.equal(versions.get('fine-1')!.map((r) => [Number(r.version), r.request_id]).slice(1), [[2, 'f1']]);
  assert.equal(versions.get('fine-2')!.map((r) => [Number(r.version), r.request_id]).slice(1), [[2, 'f2']]);
  assert.is(Number(versions.get('broken')![0]!.last_version), 1, 'the failed allocation left the counter as it was');
});

alloc('a first deploy asked for in the same turn as deploys of existing functions: created once, the others allocated', async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['old-one']);
  const outcomes = await allocateTogether([
    { userId: api.userId, name: 'old-one', requestId: 'o1' },
    { userId: api.userId, name: 'new-one', requestId: 'n1' },
    { userId: api.userId, name: 'new-one', requestId: 'n2' },
    { userId: api.userId, name: 'old-one', requestId: 'o2' },
  ]);
  for (const o of outcomes) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
  const created = outcomes.filter((o) => o.status === 'fulfilled' && o.value.isNewFunction);
  assert.is(created.length, 1, 'exactly one created it');
  const versions = await versionsOf(api.userId);
  assert.equal(versions.get('new-one')!.map((r) => Number(r.version)), [1, 2]);
  assert.equal(versions.get('old-one')!.map((r) => [Number(r.version), r.request_id]).slice(1), [[2, 'o1'], [3, 'o2']]);
});

// PostgreSQL: a group of deploys of functions this process wrote last is planned from what it
// wrote (function-snapshots.ts) and commits in one round trip; a row anyone else changed since is
// caught by the group's own check, and the group then reads first. Skipped on SQLite, which has
// its own group commit (sqliteGroupImmediate) and no such path.
const pgOnly = tp.platform.db.dialect === 'pg' ? alloc : alloc.skip;

/** How many groups this platform committed on each path so far. */
async function groupPaths(db = tp.platform.db): Promise<Record<string, number>> {
  const counted = await metricsOf(db)!.deployGroups.get();
  return Object.fromEntries(counted.values.map((v) => [String(v.labels.path), v.value]));
}

/** What changed between two groupPaths() readings. */
function pathsSince(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const paths = new Set([...Object.keys(before), ...Object.keys(after)]);
  return Object.fromEntries([...paths].map((p) => [p, (after[p] ?? 0) - (before[p] ?? 0)]).filter(([, n]) => n !== 0));
}

/** PostgreSQL: bounded polling until a session of this database waits for a row lock. */
async function untilSomeoneWaitsForALock(failure: string): Promise<void> {
  for (let i = 0; ; i++) {
    const { rows } = await tp.platform.db.knex.raw("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    if (rows[0].n > 0) return;
    if (i > 200) throw new Error(failure);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const config = (patch: Record<string, unknown>) => ({ patch, sealer: tp.platform.secrets, platform: tp.platform.config });

pgOnly('PostgreSQL: a group of functions this process wrote last commits planned, in one transaction: numbers, configurations and request ids as if read first', async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['planned-a', 'planned-b']);
  // the first group reads first, and leaves this process its snapshots
  let before = await groupPaths();
  const first = await allocateTogether([
    { userId: api.userId, name: 'planned-a', requestId: 'a2', config: config({ env: { STEP: 'one' } }) },
    { userId: api.userId, name: 'planned-b', requestId: 'b2' },
  ]);
  for (const o of first) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
  assert.equal(pathsSince(before, await groupPaths()), { read_first: 1 });
  before = await groupPaths();
  const second = await allocateTogether([
    { userId: api.userId, name: 'planned-a', requestId: 'a3' },
    { userId: api.userId, name: 'planned-b', requestId: 'b3', config: config({ env: { B: 'yes' } }) },
    { userId: api.userId, name: 'planned-a', requestId: 'a4', config: config({ env: { MORE: 'two' } }) },
    { userId: api.userId, name: 'planned-b', requestId: 'b4' },
  ]);
  for (const o of second) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
  assert.equal(pathsSince(before, await groupPaths()), { planned: 1 }, 'planned from the first group, no read');
  const answered = second.map((o) => (o as PromiseFulfilledResult<Awaited<ReturnType<typeof allocateVersion>>>).value);
  assert.equal(answered.map((a) => [Number(a.deployment.version), Number(a.fn.last_version), (a.deployment as { request_id?: string }).request_id]), [
    [3, 3, 'a3'], [3, 3, 'b3'], [4, 4, 'a4'], [4, 4, 'b4'],
  ], 'each answer as if allocated alone');
  const versions = await versionsOf(api.userId);
  const a = versions.get('planned-a')!;
  assert.equal(a.map((r) => [Number(r.version), r.request_id]).slice(1), [[2, 'a2'], [3, 'a3'], [4, 'a4']]);
  assert.equal(JSON.parse(a[2]!.config).env, { STEP: 'one' }, "v3 inherits v2's configuration, which the first group wrote");
  assert.equal(JSON.parse(a[3]!.config).env, { STEP: 'one', MORE: 'two' });
  const b = versions.get('planned-b')!;
  assert.equal(b.map((r) => [Number(r.version), r.request_id, JSON.parse(r.config).env ?? {}]).slice(1), [[2, 'b2', {}], [3, 'b3', { B: 'yes' }], [4, 'b4', { B: 'yes' }]]);
  assert.is(Number(b[0]!.last_version), 4);
  assert.is(new Set([a[3]!.xmin, b[3]!.xmin, a[2]!.xmin]).size, 1, 'one transaction');
  // a bad configuration in a group that could be planned: refused alone, the others allocated
  before = await groupPaths();
  const third = await allocateTogether([
    { userId: api.userId, name: 'planned-a', requestId: 'a5' },
    { userId: api.userId, name: 'planned-b', requestId: 'bad', config: config({ minInstances: 3, maxInstances: 1 }) },
    { userId: api.userId, name: 'planned-b', requestId: 'b5' },
  ]);
  assert.is(third[1]!.status, 'rejected');
  const reason = (third[1] as PromiseRejectedResult).reason;
  assert.ok(isAppError(reason) && reason.status === 400, `a validation error, got ${String(reason)}`);
  assert.is(third[0]!.status, 'fulfilled');
  assert.is(third[2]!.status, 'fulfilled');
  assert.equal(pathsSince(before, await groupPaths()), { alone: 1 });
  const after = await versionsOf(api.userId);
  assert.equal(after.get('planned-a')!.map((r) => [Number(r.version), r.request_id]).slice(4), [[5, 'a5']]);
  assert.equal(after.get('planned-b')!.map((r) => [Number(r.version), r.request_id]).slice(4), [[5, 'b5']], 'no number spent on the refused one');
});

pgOnly('PostgreSQL: a row another writer changed since (another replica\'s deploy, a settings change) fails the planned group\'s check, and the group reads first', async () => {
  const replica = await tp.replica();
  try {
    const api = await tp.newUser();
    await existingFunctions(api, ['moved', 'still']);
    const warm = await allocateTogether([{ userId: api.userId, name: 'moved', requestId: 'm2' }, { userId: api.userId, name: 'still', requestId: 's2' }]);
    for (const o of warm) assert.is(o.status, 'fulfilled');
    // another replica deploys a version of one of them: v3, which this process has not seen
    const viaReplica = client(replica.url, api.token);
    const theirs = await viaReplica.post('/api/functions/deploy', { name: 'moved', ...declaration(), env: { FROM: 'replica' } });
    assert.is(theirs.status, 201, JSON.stringify(theirs.body));
    assert.is(theirs.body.version, 3);
    let before = await groupPaths();
    const after = await allocateTogether([{ userId: api.userId, name: 'moved', requestId: 'm4' }, { userId: api.userId, name: 'still', requestId: 's3' }]);
    for (const o of after) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
    assert.equal(pathsSince(before, await groupPaths()), { read_first: 1 }, 'the planned attempt wrote nothing; the group read first');
    let versions = await versionsOf(api.userId);
    assert.equal(versionsOfOne(versions, 'moved'), [1, 2, 3, 4]);
    assert.equal([versions.get('moved')![1]!.request_id, versions.get('moved')![3]!.request_id], ['m2', 'm4']);
    assert.equal(JSON.parse(versions.get('moved')![3]!.config).env, JSON.parse(versions.get('moved')![2]!.config).env, "v4 inherits the replica's v3 configuration");
    assert.equal(versions.get('still')!.map((r) => Number(r.version)), [1, 2, 3]);

    // a change to the function's row that allocates nothing: requiring approval, from elsewhere
    await tp.platform.db.knex('functions').where({ user_id: api.userId, name: 'still' }).update({ require_approval: true });
    before = await groupPaths();
    const approved = await allocateTogether([{ userId: api.userId, name: 'still', requestId: 's4' }]);
    assert.is(approved[0]!.status, 'fulfilled', String((approved[0] as PromiseRejectedResult).reason));
    assert.equal(pathsSince(before, await groupPaths()), { read_first: 1 });
    versions = await versionsOf(api.userId);
    const v4 = await tp.platform.db.knex('function_deployments as d').join('functions as f', 'f.id', 'd.function_id')
      .where({ 'f.user_id': api.userId, 'f.name': 'still', 'd.version': 4 }).first('d.auto_activate');
    assert.is(Boolean(v4.auto_activate), false, 'the new version waits for approval, as the row now says');
  } finally {
    await replica.close();
  }
});

pgOnly('PostgreSQL: a function deleted and created again under its name: a planned group does not write to the old one', async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['reborn']);
  const warm = await allocateTogether([{ userId: api.userId, name: 'reborn', requestId: 'r2' }]);
  assert.is(warm[0]!.status, 'fulfilled');
  const old = await tp.platform.db.knex('functions').where({ user_id: api.userId, name: 'reborn' }).first('id');
  const deleted = await api.request('DELETE', `/api/functions/${old.id}`);
  assert.ok(deleted.status < 300, JSON.stringify(deleted.body));
  await existingFunctions(api, ['reborn']);
  const again = await allocateTogether([{ userId: api.userId, name: 'reborn', requestId: 'r-new-2' }]);
  assert.is(again[0]!.status, 'fulfilled', String((again[0] as PromiseRejectedResult).reason));
  const value = (again[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof allocateVersion>>>).value;
  assert.is.not(value.fn.id, old.id);
  assert.is(Number(value.deployment.version), 2);
  assert.equal(versionsOfOne(await versionsOf(api.userId), 'reborn'), [1, 2]);
});

// PostgreSQL answers an allocation with the row it planned (versions.ts newDeploymentRow), not the
// INSERT's RETURNING *: the answer must still be the row stored, every column of it, on every path.
alloc('an allocation answers with its version and function as stored, column by column, on every path', async () => {
  const api = await tp.newUser();
  const answers: Awaited<ReturnType<typeof allocateVersion>>[] = [];
  const before = tp.platform.db.dialect === 'pg' ? await groupPaths() : {};
  for (const [i, extra] of [{}, { metadata: { message: 'second', author: 'me' } }, { activate: false }, {}].entries()) {
    const [o] = await allocateTogether([{ userId: api.userId, name: 'as-stored', requestId: `as-${i}`, declaredSize: 10 + i, declaredSha256: 'ab'.repeat(32), ...extra }]);
    assert.is(o!.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
    answers.push((o as PromiseFulfilledResult<Awaited<ReturnType<typeof allocateVersion>>>).value);
  }
  if (tp.platform.db.dialect === 'pg') {
    const paths = pathsSince(before, await groupPaths());
    assert.ok(paths.read_first! >= 1 && paths.planned! >= 1, `both group paths taken: ${JSON.stringify(paths)}`);
  }
  // the representations both databases' drivers use for one value (Date or ISO text, int8 as text)
  const norm = (v: unknown) => (v instanceof Date ? v.toISOString() : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : v);
  const bools = new Set(['is_active', 'auto_activate']);
  const same = (answered: Record<string, unknown>, stored: Record<string, unknown>, what: string) => {
    assert.equal(Object.keys(answered).sort(), Object.keys(stored).sort(), `${what}: the same columns`);
    for (const column of Object.keys(stored)) {
      const [a, b] = bools.has(column) ? [Boolean(answered[column]), Boolean(stored[column])] : [norm(answered[column]), norm(stored[column])];
      assert.equal(a, b, `${what}: ${column}`);
    }
  };
  for (const answer of answers) {
    const stored = await tp.platform.db.knex('function_deployments').where({ id: answer.deployment.id }).first();
    same(answer.deployment as unknown as Record<string, unknown>, stored, `version ${answer.deployment.version}`);
  }
  const last = answers.at(-1)!;
  const fn = await tp.platform.db.knex('functions').where({ id: last.fn.id }).first();
  same(last.fn as unknown as Record<string, unknown>, fn, 'the function');
});

function versionsOfOne(versions: Awaited<ReturnType<typeof versionsOf>>, name: string): number[] {
  return versions.get(name)!.map((r) => Number(r.version));
}

pgOnly("PostgreSQL: a planned group is refused by the account's quotas exactly as one that reads first, and spends no number", async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['quota-a', 'quota-b']);
  const quotas = { maxFunctions: null, maxInstances: null, maxBuilds: 1, maxArchiveBytes: 10_000 };
  const both = (sizes: [number, number], tag: string) =>
    allocateTogether([
      { userId: api.userId, name: 'quota-a', requestId: `${tag}-a`, quotas, declaredSize: sizes[0] },
      { userId: api.userId, name: 'quota-b', requestId: `${tag}-b`, quotas, declaredSize: sizes[1] },
    ]);
  for (const o of await both([100, 100], 'warm')) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
  let before = await groupPaths();
  for (const o of await both([100, 100], 'ok')) assert.is(o.status, 'fulfilled', String((o as PromiseRejectedResult).reason));
  assert.equal(pathsSince(before, await groupPaths()), { planned: 1 }, 'within the quotas: planned');
  const knex = tp.platform.db.knex;
  const fnA = await knex('functions').where({ user_id: api.userId, name: 'quota-a' }).first('id');
  // 9,900 bytes stored: room for 100 more
  await knex('function_deployments').where({ function_id: fnA.id, version: 1 }).update({ archive_size: 9_900 });
  before = await groupPaths();
  const over = await both([100, 101], 'bytes');
  assert.is(over[0]!.status, 'fulfilled', String((over[0] as PromiseRejectedResult).reason));
  assert.is(over[1]!.status, 'rejected');
  assert.is(((over[1] as PromiseRejectedResult).reason as { code?: string }).code, 'quota_exceeded');
  assert.match(String((over[1] as PromiseRejectedResult).reason), /MAX_ARCHIVE_BYTES_PER_USER/);
  assert.equal(pathsSince(before, await groupPaths()), { alone: 1 }, 'the planned check refused the group, as the read did: each alone');
  // a build queued or running: the build slot (1) is taken, every deploy is refused
  await knex('function_deployments').where({ function_id: fnA.id, version: 2 }).update({ status: 'building' });
  for (const o of await both([1, 1], 'builds')) {
    assert.is(o.status, 'rejected');
    assert.match(String((o as PromiseRejectedResult).reason), /MAX_BUILDS_PER_USER/);
  }
  const versions = await versionsOf(api.userId);
  assert.equal(versionsOfOne(versions, 'quota-a'), [1, 2, 3, 4], 'no number spent on a refused deploy');
  assert.equal(versionsOfOne(versions, 'quota-b'), [1, 2, 3]);
});

// SQLite has one writer at a time (a held write lock holds every deploy): reported as skipped there
(tp.platform.db.dialect === 'pg' ? alloc : alloc.skip)("PostgreSQL: a group waiting for one function's lock does not hold up deploys of other functions", async () => {
  const api = await tp.newUser();
  await existingFunctions(api, ['held', 'free']);
  const knex = tp.platform.db.knex;
  // the function's lock, as cleanup or a long delete would hold it
  const holder = await knex.transaction();
  let stuck: Promise<Awaited<ReturnType<typeof allocateVersion>>> | undefined;
  try {
    await holder.raw('SELECT id FROM functions WHERE user_id = ? AND name = ? FOR NO KEY UPDATE', [api.userId, 'held']);
    stuck = allocateVersion(tp.platform.db, { userId: api.userId, name: 'held', status: 'pending_upload' });
    await untilSomeoneWaitsForALock("the group never waited for the function's lock");
    // bounded: without the stalled group's escape it waits for the holder, which waits for it
    const free = await Promise.race([
      allocateVersion(tp.platform.db, { userId: api.userId, name: 'free', status: 'pending_upload' }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the deploy of another function waited for the stalled group')), 5_000).unref()),
    ]);
    assert.is(Number(free.deployment.version), 2);
    await holder.commit();
  } catch (err) {
    await holder.rollback();
    await stuck?.catch(() => {});
    throw err;
  }
  const held = await stuck!;
  assert.is(Number(held.deployment.version), 2, 'allocated once the lock was released');
});

/**
 * The writers of version and usage rows that the race tests below run at once: functions `names`
 * (ids in that order), each with `failed` failed versions whose archives are still stored (cleanup
 * removes them), then 3 queued builds claimed by a runner, then 3 uploads waiting for their complete.
 */
async function raceFixture(api: Client, names: string[], failed: number) {
  const db = tp.platform.db;
  const functionIds: string[] = [];
  for (const name of names) {
    for (let v = 1; v <= failed + 3; v++) {
      const r = await api.post('/api/functions/deploy', { name, ...declaration() });
      assert.is(r.status, 201, JSON.stringify(r.body));
      if (v === 1) functionIds.push(r.body.id);
    }
  }
  const now = new Date().toISOString();
  await db.knex('function_deployments').whereIn('function_id', functionIds).where('version', '<=', failed).update({ status: 'failed', archive_size: 100, updated_at: now });
  await db.knex('function_deployments').whereIn('function_id', functionIds).where('version', '>', failed).update({ status: 'building', archive_size: 100, queued_at: now, updated_at: now });
  const uploads: { id: string; version: number }[] = [];
  for (const name of names) {
    for (let i = 0; i < 3; i++) {
      const body = Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.from(`${name} ${i}`)]);
      const r = await api.post('/api/functions/deploy', { name, ...declaration(body) });
      const put = await fetch(r.body.upload.url, { method: 'PUT', headers: r.body.upload.headers, body });
      assert.is(put.status, 200);
      uploads.push({ id: r.body.id, version: r.body.version });
    }
  }
  const claimed = (await claimBuilds(db, { runnerId: 'race', limit: 1000, leaseMs: 60_000, maxAttempts: 5 })).filter((c) => functionIds.includes(c.functionId));
  assert.is(claimed.length, 3 * names.length);
  return { functionIds, uploads, claimed };
}

/** A runner's final verdict on a claimed build, as the race tests send it. */
const failRaced = (c: { id: string; functionId: string; claimToken: string }) =>
  failBuild(tp.platform.db, {
    deploymentId: c.id,
    functionId: c.functionId,
    claimToken: c.claimToken,
    failure: { kind: 'final', message: 'raced' },
    buildLogs: '',
    policy: { maxAttempts: 5, retryBaseMs: 1000, buildTimeoutMs: 60_000 },
  });

alloc('completes, runners and cleanup changing the same functions at once: no deadlock, usage counts exact', async () => {
  // The usage rows' triggers lock a function's row in function_usage until commit, inside
  // transactions that hold other locks: the account's (complete), the function's (a runner's
  // verdict), many versions' (cleanup's bulk update of failed versions). Here all three run at once
  // over the same functions, through the real paths.
  const api = await tp.newUser();
  const db = tp.platform.db;
  const { functionIds, uploads, claimed } = await raceFixture(api, ['race-a', 'race-b', 'race-c', 'race-d'], 4);
  const outcomes = await Promise.allSettled([
    runCleanup(tp.platform, tp.driver, { keepLastN: 3 }),
    ...claimed.map(failRaced),
    ...uploads.map((u) => api.post(`/api/functions/${u.id}/deployments/${u.version}/complete`)),
  ]);
  for (const o of outcomes) assert.is(o.status, 'fulfilled', o.status === 'rejected' ? String(o.reason) : '');
  const values = outcomes.map((o) => (o as PromiseFulfilledResult<any>).value);
  assert.is(values[0].skipped, false, values[0].reason);
  assert.is(values[0].errors, 0, 'cleanup met no error');
  assert.ok(values[0].failedArchivesRemoved >= 16, `cleanup removed the 16 old failed archives in its bulk update (${values[0].failedArchivesRemoved})`);
  for (const v of values.slice(1, 13)) assert.equal([v.fenced, v.willRetry, v.error], [false, false, 'raced']);
  for (const v of values.slice(13)) assert.is(v.status, 202, JSON.stringify(v.body));
  await assertUsageAgrees(db.knex);
  const usage = await db.knex('function_usage').whereIn('function_id', functionIds);
  assert.is(usage.reduce((n: number, u: any) => n + Number(u.builds), 0), 12, 'the 12 completes queued, the 12 claimed builds failed');
});

alloc('a function deleted while its versions are completed, failed by runners and cleaned: no deadlock, nothing of it left, the other function counted exactly', async () => {
  // The delete locks the function, then its cascade locks every version row and (through the usage
  // triggers) the usage row. The others lock versions and usage rows of the same function without
  // its lock (complete; cleanup's bulk update of failed versions) or with it (a runner's verdict).
  const api = await tp.newUser();
  const db = tp.platform.db;
  const keysOf = async (functionId: string) =>
    (await db.knex('function_deployments').where({ function_id: functionId }).select('s3_key')).map((r: { s3_key: string }) => r.s3_key);
  for (let round = 0; round < 3; round++) {
    const { functionIds, uploads, claimed } = await raceFixture(api, [`del-gone-${round}`, `del-kept-${round}`], 8);
    const ids = { gone: functionIds[0]!, kept: functionIds[1]! };
    const goneKeys = await keysOf(ids.gone);
    const outcomes = await Promise.allSettled([
      api.request('DELETE', `/api/functions/${ids.gone}`),
      runCleanup(tp.platform, tp.driver, { keepLastN: 3 }),
      ...claimed.map(failRaced),
      ...uploads.map((u) => api.post(`/api/functions/${u.id}/deployments/${u.version}/complete`)),
    ]);
    for (const o of outcomes) assert.is(o.status, 'fulfilled', o.status === 'rejected' ? String(o.reason) : '');
    const values = outcomes.map((o) => (o as PromiseFulfilledResult<any>).value);
    assert.is(values[0].status, 204, JSON.stringify(values[0].body));
    assert.is(values[1].skipped, false, values[1].reason);
    assert.is(values[1].errors, 0, 'cleanup met no error (a deadlock would be one)');
    for (const [i, c] of claimed.entries()) {
      const v = values[2 + i];
      // a verdict on a version already deleted is fenced; any other is recorded
      if (c.functionId === ids.gone && v.fenced) assert.is(v.willRetry, false);
      else assert.equal([v.fenced, v.willRetry, v.error], [false, false, 'raced']);
    }
    for (const [i, u] of uploads.entries()) {
      const v = values[2 + claimed.length + i];
      // a complete of the deleted function's version is queued before the delete, or finds no
      // function (the tenant check) or no version (the delete committed after that check) after it
      if (u.id === ids.gone) assert.ok(v.status === 202 || (v.status === 404 && ['function_not_found', 'version_not_found'].includes(v.body.error.code)), `${v.status} ${JSON.stringify(v.body)}`);
      else assert.is(v.status, 202, JSON.stringify(v.body));
    }
    for (const table of ['functions', 'function_deployments', 'function_usage', 'function_logs']) {
      const column = table === 'functions' ? 'id' : 'function_id';
      const left = await db.knex(table).where(column, ids.gone).count({ n: '*' });
      assert.is(Number(left[0]!.n), 0, `${table} keeps no row of the deleted function`);
    }
    for (const key of goneKeys) assert.is(await tp.platform.storage.digest(key), null, `${key} removed with its function`);
    await assertUsageAgrees(db.knex);
    const kept = await db.knex('function_usage').where({ function_id: ids.kept }).first();
    assert.is(Number(kept.builds), 3, 'the kept function: its 3 completes queued, its 3 claimed builds failed');
  }
});

pgOnly("PostgreSQL: a function's deletion waits for a writer holding one of its versions that then references the function (a complete's order): no deadlock", async () => {
  // A complete's one statement updates its version's row and then inserts an event, whose foreign
  // key takes KEY SHARE on the function's row. A deletion that held the function's row FOR UPDATE
  // while waiting for that version's row closed the cycle (PostgreSQL aborted one after 1 s).
  const api = await tp.newUser();
  const made = await api.post('/api/functions/deploy', { name: 'del-order', ...declaration() });
  assert.is(made.status, 201, JSON.stringify(made.body));
  const knex = tp.platform.db.knex;
  const writer = await knex.transaction();
  let deleting: ReturnType<typeof api.request> | undefined;
  try {
    await writer.raw('UPDATE function_deployments SET updated_at = now() WHERE id = ?', [made.body.deploymentId]);
    deleting = api.request('DELETE', `/api/functions/${made.body.id}`);
    await untilSomeoneWaitsForALock("the deletion never waited for the version's row");
    await Promise.race([
      writer.raw("INSERT INTO function_logs (function_id, deployment_id, version, event, message, created_at) VALUES (?, ?, 1, 'upload_completed', 'raced', now())", [made.body.id, made.body.deploymentId]),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the writer waited for the deletion')), 5_000).unref()),
    ]);
    await writer.commit();
  } catch (err) {
    await writer.rollback().catch(() => {});
    await deleting?.catch(() => {});
    throw err;
  }
  const deleted = await deleting;
  assert.is(deleted.status, 204, JSON.stringify(deleted.body));
  const left = await knex('function_deployments').where({ function_id: made.body.id }).count({ n: '*' });
  assert.is(Number(left[0]!.n), 0);
});

alloc('the usage rows the quotas read agree with a recount, after the concurrent deploys above', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
});

alloc.run();
