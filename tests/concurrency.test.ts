// Version numbers are allocated under a lock: concurrent deploys (through one API or several
// replicas sharing the database) never share, skip or reuse a number.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { client } from './support/http.ts';
import { declaration } from './support/flows.ts';
import { randomUUID } from 'node:crypto';
import { allocateVersion } from '../shared/domain/versions.ts';

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
alloc.run();
