// Database-level hardening (PostgreSQL; reported as skipped on SQLite, which has neither row locks
// nor LISTEN): function row locks that foreign-key checks do not wait on, and a LISTEN connection
// that comes back however often it is cut.
import net from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { lockFunctionRow, withTransaction } from '../shared/db/dialect.ts';
import { PgListener } from '../shared/db/listener.ts';
import { createLogger } from '../shared/logger.ts';
import { recordEvent } from '../shared/domain/events.ts';
import { BUILD_QUEUED_CHANNEL } from '../shared/domain/build-queue.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployPresigned, simulateBuilt, waitForBuild } from './support/flows.ts';
import { runnerEnv, spawnRunner, type RunnerProcess } from './support/processes.ts';
import { waitFor } from './support/services.ts';

const t = await startTestPlatform();
if (!t) process.exit(0);
const tp = t as TestPlatform;
const pg = tp.platform.db.dialect === 'pg';
const db = tp.platform.db.knex;

const locks = suite('row locks and LISTEN');
const pgOnly = pg ? locks : locks.skip;

pgOnly('a function row lock does not block an event inserted for that function (FOR NO KEY UPDATE)', async () => {
  const api = await tp.newUser();
  const d = await deployPresigned(api, 'locked', Buffer.from('x'));
  await simulateBuilt(tp.platform, d.id, 1);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = withTransaction(tp.platform.db, async (trx) => {
    assert.ok(await lockFunctionRow(tp.platform.db, trx, d.id));
    locked();
    await held;
  });
  await isLocked;
  try {
    // The insert's foreign-key check takes FOR KEY SHARE on the function row: with FOR UPDATE it
    // would wait for the lock (here: fail after 1 s), with FOR NO KEY UPDATE it goes through.
    await db.transaction(async (trx) => {
      await trx.raw("SET LOCAL lock_timeout = '1s'");
      await recordEvent(trx, { functionId: d.id, event: 'activated', message: 'inserted while the function row is locked' });
    });
  } finally {
    release();
    await holder;
  }
  const rows = await db('function_logs').where({ function_id: d.id, message: 'inserted while the function row is locked' });
  assert.is(rows.length, 1);
});

pgOnly("a runner's LISTEN connection cut twice comes back: a queued build still wakes it at once", async () => {
  let runner: RunnerProcess | undefined;
  try {
    // polling every 10 minutes: only NOTIFY can wake it within the test
    runner = spawnRunner('listener', runnerEnv(tp, { RUNNER_POLL_MS: '600000' }));
    const listeners = async () =>
      (
        await db.raw(
          'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = ? AND pid <> pg_backend_pid()',
          [`LISTEN ${BUILD_QUEUED_CHANNEL}`],
        )
      ).rows.map((r: { pid: number }) => r.pid) as number[];
    let current = await waitFor('the runner to LISTEN', async () => (await listeners())[0]);
    for (let cut = 0; cut < 2; cut++) {
      await db.raw('SELECT pg_terminate_backend(?)', [current]);
      const previous = current;
      current = await waitFor(`LISTEN to come back after cut ${cut + 1}`, async () => (await listeners()).find((p) => p !== previous), {
        timeoutMs: 15_000,
      });
    }
    const api = await tp.newUser();
    const d = await deployPresigned(api, 'woken', await makeNodeFunction('export default () => 1;'));
    const built = await waitForBuild(api, d.id, d.version, 30_000);
    assert.is(built.status, 'active', built.error ?? '');
  } finally {
    await runner?.kill('SIGKILL');
  }
});

pgOnly('LISTEN reconnects with backoff for as long as the database refuses it, then hears NOTIFY again', async () => {
  // A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.
  let refusing = false;
  let refused = 0;
  const sockets = new Set<net.Socket>();
  const target = new URL((tp.platform.config.database as { url: string }).url);
  const proxy = net.createServer((client) => {
    if (refusing) {
      refused++;
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const viaProxy = new URL(target);
  viaProxy.port = String((proxy.address() as net.AddressInfo).port);
  const heard: string[] = [];
  let resets = 0;
  const listener = new PgListener({
    url: viaProxy.toString(),
    channels: ['containerpub_hardening_test'],
    onNotification: (_c, payload) => heard.push(payload ?? ''),
    onReset: () => resets++,
    logger: createLogger('silent'),
  });
  try {
    assert.ok(await listener.start());
    refusing = true;
    for (const sock of sockets) sock.destroy();
    await waitFor('the connection to be lost', () => !listener.healthy);
    // several reconnects refused in a row: it keeps trying (the old code gave up after one)
    await waitFor('three refused reconnects', () => refused >= 3, { timeoutMs: 15_000 });
    refusing = false;
    await waitFor('LISTEN back', () => listener.healthy, { timeoutMs: 15_000 });
    assert.ok(resets >= 2, 'the owner was told to drop what it cached, on the loss and on the return');
    await db.raw('SELECT pg_notify(?, ?)', ['containerpub_hardening_test', 'hello again']);
    await waitFor('the notification', () => heard.includes('hello again'));
  } finally {
    await listener.stop();
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => proxy.close(r));
  }
});

locks.after(() => tp.close());
locks.run();
