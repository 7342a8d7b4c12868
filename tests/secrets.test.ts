// The secrets key at start-up, on each database: generated once by `npm start`, verified against the
// key check stored in platform_settings by every later start, and a wrong or missing key stops the
// process with a message naming SECRETS_KEY (never the key itself).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadConfig, type Config } from '../shared/config.ts';
import { openDatabase, type Db } from '../shared/db/knex.ts';
import { KEY_CHECK_SETTING, loadSecretBox, SecretsKeyError, type SecretBox } from '../shared/secrets.ts';
import { startTestPlatform } from './support/platform.ts';
import { nodeArgsFor } from './support/bundle.ts';
import { createPgDatabase, postgresAvailable, requireService, testDbKind } from './support/services.ts';

const root = path.resolve(import.meta.dirname, '..');
const cleanups: (() => Promise<void>)[] = [];

if (testDbKind() === 'postgres') {
  const why = await postgresAvailable();
  if (!requireService('PostgreSQL', why === null, why ?? '')) process.exit(0);
}

/** A fresh database and DATA_DIR; `env` for the config (SECRETS_KEY). */
async function fresh(): Promise<{ dataDir: string; databaseUrl: string; config(env?: Record<string, string>): Config; db: Db }> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-secrets-'));
  let databaseUrl = `sqlite:${path.join(dataDir, 'containerpub.sqlite')}`;
  let drop: (() => Promise<void>) | undefined;
  if (testDbKind() === 'postgres') {
    const pg = await createPgDatabase();
    databaseUrl = pg.url;
    drop = pg.drop;
  }
  const config = (env: Record<string, string> = {}) => loadConfig({ DATA_DIR: dataDir, DATABASE_URL: databaseUrl, ...env });
  const db = await openDatabase(config().database);
  cleanups.push(async () => {
    await db.close();
    await drop?.();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return { dataDir, databaseUrl, config, db };
}

async function refused(promise: Promise<unknown>, pattern: RegExp, mustNotContain: string[] = []): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.instance(err, SecretsKeyError, String(err));
    const message = (err as Error).message;
    assert.match(message, pattern);
    for (const s of mustNotContain) assert.not.ok(message.includes(s), 'the message does not repeat the key');
    return message;
  }
  assert.unreachable('the key was accepted');
  return '';
}

const checkRow = async (db: Db) => (await db.knex('platform_settings').where({ name: KEY_CHECK_SETTING }).first()) as { value: string } | undefined;

test.after(async () => {
  for (const c of cleanups.splice(0)) await c().catch(() => {});
});

test('first start generates the key file (0600) and stores a key check; later starts verify it', async () => {
  const f = await fresh();
  assert.is(await checkRow(f.db), undefined, 'no key check before the first start');
  const box = await loadSecretBox(f.config(), f.db, { generate: true });
  const file = path.join(f.dataDir, 'secrets.key');
  assert.ok(fs.existsSync(file));
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  const row = await checkRow(f.db);
  assert.ok(row && row.value.startsWith('v1:'), 'a sealed check value');
  const sealed = box.seal('the value', 'fn/NAME');
  // a second start (API or runner: no generating) with the same file
  const again = await loadSecretBox(f.config(), f.db, { generate: false });
  assert.is(again.open(sealed, 'fn/NAME'), 'the value');
  assert.is((await checkRow(f.db))!.value, row!.value, 'the check value is written once');
  // the same key given as SECRETS_KEY (in hex) also passes, and wins over the file
  const hex = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64').toString('hex');
  const fromEnv = await loadSecretBox(f.config({ SECRETS_KEY: hex }), f.db, { generate: false });
  assert.is(fromEnv.open(sealed, 'fn/NAME'), 'the value');
});

test('a wrong SECRETS_KEY fails start-up naming SECRETS_KEY, without the key in the message', async () => {
  const f = await fresh();
  await loadSecretBox(f.config(), f.db, { generate: true });
  const wrong = randomBytes(32).toString('base64');
  await refused(loadSecretBox(f.config({ SECRETS_KEY: wrong }), f.db, { generate: true }), /SECRETS_KEY.*not the key/, [wrong]);
  // a key file replaced by another key is refused the same way
  const other = randomBytes(32).toString('hex');
  fs.writeFileSync(path.join(f.dataDir, 'secrets.key'), other);
  await refused(loadSecretBox(f.config(), f.db, { generate: false }), /SECRETS_KEY/, [other]);
});

test('secrets sealed under a key that is gone: no new key is generated, start-up fails', async () => {
  const f = await fresh();
  await loadSecretBox(f.config(), f.db, { generate: true });
  const file = path.join(f.dataDir, 'secrets.key');
  fs.rmSync(file);
  await refused(loadSecretBox(f.config(), f.db, { generate: true }), /set SECRETS_KEY/);
  assert.not.ok(fs.existsSync(file), 'no key generated over stored secrets');
});

test('without SECRETS_KEY or a key file, start:api and start:runner (generate=false) refuse to start', async () => {
  const f = await fresh();
  await refused(loadSecretBox(f.config(), f.db, { generate: false }), /no secrets key: set SECRETS_KEY/);
  assert.is(await checkRow(f.db), undefined, 'nothing recorded');
  assert.not.ok(fs.existsSync(path.join(f.dataDir, 'secrets.key')));
});

test('a key file that holds no key is refused, naming the file and not its content', async () => {
  const f = await fresh();
  const file = path.join(f.dataDir, 'secrets.key');
  fs.writeFileSync(file, 'garbage-that-is-not-a-key', { mode: 0o600 });
  await refused(loadSecretBox(f.config(), f.db, { generate: true }), new RegExp(file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')), ['garbage']);
});

test('two first starts with different keys at once: exactly one key wins', async () => {
  const f = await fresh();
  const keys = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
  const results = await Promise.allSettled(keys.map((k) => loadSecretBox(f.config({ SECRETS_KEY: k }), f.db, { generate: false })));
  assert.is(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results.map((r) => r.status)));
  const winner = keys[results.findIndex((r) => r.status === 'fulfilled')]!;
  const box = (await loadSecretBox(f.config({ SECRETS_KEY: winner }), f.db, { generate: false })) as SecretBox;
  assert.ok(box);
});

/** Runs an entry point until it exits (or is killed after the test's bound); stderr and exit code. */
function runEntry(script: string, env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, nodeArgsFor(script), {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', RUNTIME_DRIVER: 'process', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(killer);
      resolve({ code, stderr });
    });
  });
}

test('the real start:api process: missing or wrong key exits 2 with the message, no stack trace', async () => {
  const f = await fresh();
  const env = { DATA_DIR: f.dataDir, DATABASE_URL: f.databaseUrl };
  const missing = await runEntry('api/main.ts', env);
  assert.is(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /containerpub: no secrets key: set SECRETS_KEY/);
  assert.not.match(missing.stderr, /\n\s+at /);
  // the key npm start would have made, then a different one given to the API
  await loadSecretBox(f.config(), f.db, { generate: true });
  const wrong = randomBytes(32).toString('hex');
  const bad = await runEntry('api/main.ts', { ...env, SECRETS_KEY: wrong });
  assert.is(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /SECRETS_KEY/);
  assert.not.ok(bad.stderr.includes(wrong));
  assert.not.match(bad.stderr, /API listening/);
});

test('the real npm start generates DATA_DIR/secrets.key (0600) on its first run, and a start:api beside it uses it', async () => {
  const f = await fresh();
  const env = { PATH: process.env.PATH ?? '', DATA_DIR: f.dataDir, DATABASE_URL: f.databaseUrl, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', RUNTIME_DRIVER: 'process', CLEANUP_CRON: 'off', SHUTDOWN_GRACE_MS: '500' };
  const child = spawn(process.execPath, nodeArgsFor('scripts/start.ts'), { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`npm start did not start:\n${out}`)), 60_000);
      const look = () => {
        if (/ContainerPub is running/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stderr.on('data', look);
      exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`npm start exited:\n${out}`));
      });
    });
    const file = path.join(f.dataDir, 'secrets.key');
    assert.is(fs.statSync(file).mode & 0o777, 0o600);
    assert.match(out, /generated the secrets key/);
    assert.not.ok(out.includes(fs.readFileSync(file, 'utf8').trim()), 'the key is never logged');
    assert.ok(await checkRow(f.db), 'the key check was recorded');
    // an API process on the same data directory opens with that file (no SECRETS_KEY)
    const box = await loadSecretBox(f.config(), f.db, { generate: false });
    assert.ok(box);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});

test('the test platform (like npm start) gets a working box from a generated key file', async () => {
  const tp = await startTestPlatform();
  if (!tp) return;
  try {
    assert.ok(fs.existsSync(path.join(tp.dataDir, 'secrets.key')));
    const sealed = tp.platform.secrets.seal('v', 'f/N');
    assert.is(tp.platform.secrets.open(sealed, 'f/N'), 'v');
    // a replica (start:api beside it) opens with the same key file, no generating
    const replica = await tp.replica();
    assert.is(replica.platform.secrets.open(sealed, 'f/N'), 'v');
    await replica.close();
  } finally {
    await tp.close();
  }
});

test.run();
