// `npm run migrate` as a real process against a fresh database (SQLite file or PostgreSQL database).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { migrationSource } from '../migrations/index.ts';
import type { Db } from '../shared/db/knex.ts';
import { createPgDatabase, postgresAvailable, requireService, testDbKind } from './support/services.ts';

const run = promisify(execFile);
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-migrate-'));
let env: Record<string, string> = { DATA_DIR: dataDir };
let drop: (() => Promise<void>) | undefined;
if (testDbKind() === 'postgres') {
  const why = await postgresAvailable();
  if (!requireService('PostgreSQL', why === null, why ?? '')) process.exit(0);
  const db = await createPgDatabase();
  env = { ...env, DATABASE_URL: db.url };
  drop = db.drop;
}
const migrate = (...args: string[]) =>
  run('npm', ['run', '-s', 'migrate', '--', ...args], { env: { ...process.env, ...env }, cwd: path.resolve(import.meta.dirname, '..') });
const all = await migrationSource.getMigrations([]);

test.after(async () => {
  await drop?.();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A database of its own (a SQLite file or a PostgreSQL database), migrated by the test itself. */
async function withOldDatabase(fn: (db: Db) => Promise<void>): Promise<void> {
  const { createDb } = await import('../shared/db/knex.ts');
  const { loadConfig } = await import('../shared/config.ts');
  const oldDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-migrate-old-'));
  let dropOld: (() => Promise<void>) | undefined;
  let cfg = loadConfig({ DATA_DIR: oldDir });
  if (testDbKind() === 'postgres') {
    const pg = await createPgDatabase();
    dropOld = pg.drop;
    cfg = loadConfig({ DATA_DIR: oldDir, DATABASE_URL: pg.url });
  }
  const db = createDb(cfg.database);
  try {
    await fn(db);
  } finally {
    await db.knex.destroy();
    await dropOld?.();
    fs.rmSync(oldDir, { recursive: true, force: true });
  }
}

test('--status on a fresh database lists every migration as pending', async () => {
  const { stdout } = await migrate('--status');
  for (const m of all) assert.match(stdout, `pending  ${m}`);
  assert.match(stdout, `0 applied, ${all.length} pending`);
});

test('migrate applies them all, then is a no-op; --status shows them applied', async () => {
  const first = await migrate();
  assert.match(first.stdout, `applied ${all[0]}`);
  const again = await migrate();
  assert.match(again.stdout, 'already up to date');
  const { stdout } = await migrate('--status');
  assert.match(stdout, `${all.length} applied, 0 pending`);
});

test('a bad option exits 2 with the usage', async () => {
  try {
    await migrate('--bogus');
    assert.unreachable('accepted --bogus');
  } catch (err: any) {
    assert.is(err.code, 2);
    assert.match(err.stderr, 'usage: npm run migrate');
  }
});


test('accounts made before handles get unique handles derived from their emails, in creation order', async () => {
  await withOldDatabase(async (db) => {
    // the schema as it was before handles
    const before = all.indexOf('20261202000400_endpoints');
    for (let i = 0; i < before; i++) await db.knex.migrate.up({ migrationSource });
    const users = [
      ['ada@example.com', '2026-01-01T00:00:00.000Z'],
      ['ada@example.org', '2026-01-02T00:00:00.000Z'],
      ['Ada@Example.net', '2026-01-03T00:00:00.000Z'],
      ['++@example.com', '2026-01-04T00:00:00.000Z'],
    ];
    for (const [email, at] of users) {
      await db.knex('users').insert({ id: crypto.randomUUID(), email, password_hash: 'x', created_at: at });
    }
    await db.knex.migrate.latest({ migrationSource });
    const rows = await db.knex('users').select('email', 'handle').orderBy('created_at');
    assert.equal(rows.map((r) => r.handle), ['ada', 'ada-2', 'ada-3', 'user']);
    // handles are unique from now on
    let refused = false;
    await db
      .knex('users')
      .insert({ id: crypto.randomUUID(), email: 'z@z.z', handle: 'ada', password_hash: 'x', created_at: '2026-01-05T00:00:00.000Z' })
      .catch(() => (refused = true));
    assert.ok(refused, 'a second "ada" is refused by the database');
  });
});

test('function usage: backfilled from the versions already there, then kept by the triggers; down and up again', async () => {
  const { assertUsageAgrees } = await import('./support/usage.ts');
  await withOldDatabase(async ({ knex: k }) => {
    const before = all.indexOf('20261205000100_function_usage');
    for (let i = 0; i < before; i++) await k.migrate.up({ migrationSource });
    const now = '2026-12-01T00:00:00.000Z';
    const userId = crypto.randomUUID();
    await k('users').insert({ id: userId, email: 'u@example.com', handle: 'u', password_hash: 'x', created_at: now });
    const fnIds = [crypto.randomUUID(), crypto.randomUUID()];
    for (const [i, id] of fnIds.entries()) {
      await k('functions').insert({ id, user_id: userId, name: `f${i}`, status: 'active', last_version: 5, intent_seq: 5, active_intent_seq: 0, created_at: now, updated_at: now });
    }
    // [function, status, archive_size, archive removed]
    const versions: [number, string, number | null, boolean][] = [
      [0, 'building', 100, false],
      [0, 'building', 200, false],
      [0, 'active', 1_000, false],
      [0, 'inactive', 5_000, true],
      [0, 'pending_upload', null, false],
      [1, 'failed', 7, false],
      [1, 'inactive', 30, false],
    ];
    for (const [i, [f, status, size, removed]] of versions.entries()) {
      await k('function_deployments').insert({
        id: crypto.randomUUID(), function_id: fnIds[f], version: i + 1, s3_key: `k${i}`, status, is_active: false, archive_size: size,
        archive_removed_at: removed ? now : null, intent_seq: i + 1, created_at: now, updated_at: now,
      });
    }
    await k.migrate.latest({ migrationSource });
    const indexes = async () => {
      const r = await k.raw(
        testDbKind() === 'postgres' ? "SELECT indexname AS name FROM pg_indexes WHERE tablename = 'function_deployments'" : "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'function_deployments'",
      );
      return ((Array.isArray(r) ? r : r.rows) as { name: string }[]).map((x) => x.name);
    };
    const countingIndexes = ['function_deployments_building', 'function_deployments_stored_archives'];
    assert.equal((await indexes()).filter((n) => countingIndexes.includes(n)), [], 'the indexes the old counts read are gone');
    const usage = async () => (await k('function_usage').orderBy('function_id')).map((r: any) => [r.function_id, Number(r.builds), Number(r.archive_bytes)]);
    const expected = [[fnIds[0], 2, 1_300], [fnIds[1], 0, 37]].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
    assert.equal(await usage(), expected, 'backfilled');
    // the triggers from now on: a build finishes, an archive is removed, a function is deleted, one is created
    await k('function_deployments').where({ function_id: fnIds[0], archive_size: 100 }).update({ status: 'active' });
    await k('function_deployments').where({ function_id: fnIds[0], archive_size: 1_000 }).update({ archive_removed_at: now });
    await k('functions').where({ id: fnIds[1] }).delete();
    const created = crypto.randomUUID();
    await k('functions').insert({ id: created, user_id: userId, name: 'new', status: 'pending', last_version: 1, intent_seq: 1, active_intent_seq: 0, created_at: now, updated_at: now });
    await assertUsageAgrees(k);
    assert.equal((await usage()).map((r) => r[0]).sort(), [fnIds[0], created].sort());
    // down removes the table and its triggers (versions are written without them), up rebuilds it
    await k.migrate.down({ migrationSource });
    assert.not.ok(await k.schema.hasTable('function_usage'));
    assert.equal((await indexes()).filter((n) => countingIndexes.includes(n)).sort(), countingIndexes, 'and back with down');
    await k('function_deployments').where({ function_id: fnIds[0], archive_size: 200 }).update({ status: 'failed' });
    await k.migrate.latest({ migrationSource });
    await assertUsageAgrees(k);
    assert.equal((await usage()).find((r) => r[0] === fnIds[0]), [fnIds[0], 0, 300]);
  });
});

test.run();
