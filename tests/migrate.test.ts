// `npm run migrate` as a real process against a fresh database (SQLite file or PostgreSQL database).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { migrationSource } from '../migrations/index.ts';
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
  } finally {
    await db.knex.destroy();
    await dropOld?.();
    fs.rmSync(oldDir, { recursive: true, force: true });
  }
});

test.run();
