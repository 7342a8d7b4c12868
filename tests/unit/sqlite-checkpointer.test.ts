// SQLite's WAL is checkpointed by a worker thread (shared/db/sqlite-checkpointer.ts), not by the
// serving connection's commits on the event loop: its own threshold is only the safety net.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { openDatabase } from '../../shared/db/knex.ts';
import { SERVING_AUTOCHECKPOINT_PAGES } from '../../shared/db/sqlite-checkpointer.ts';

test('the worker checkpoints the WAL well before the serving connection would; closing stops it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-checkpoint-'));
  const db = await openDatabase({ client: 'sqlite', filename: path.join(dir, 'db.sqlite') });
  try {
    const [threshold] = (await db.knex.raw('PRAGMA wal_autocheckpoint')) as { wal_autocheckpoint: number }[];
    assert.is(threshold!.wal_autocheckpoint, SERVING_AUTOCHECKPOINT_PAGES, 'the serving connection only checkpoints as a safety net');
    await db.knex.schema.createTable('t', (t) => {
      t.integer('id').primary();
      t.text('v');
    });
    // a few hundred pages, far below the serving connection's threshold
    for (let i = 0; i < 300; i++) await db.knex('t').insert({ id: i, v: 'x'.repeat(2000) });
    for (let i = 0; ; i++) {
      const last = db.checkpointer!.last();
      if (last && last.walFrames >= 300 && last.checkpointedFrames === last.walFrames) break;
      if (i > 400) throw new Error(`the WAL was not checkpointed by the worker: ${JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.is((await db.knex('t').count({ n: '*' }).first())!.n, 300);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a process that never closes its database still exits (the worker does not hold it)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-checkpoint-'));
  const knexModule = new URL('../../shared/db/knex.ts', import.meta.url).href;
  const code = `const { openDatabase } = await import(${JSON.stringify(knexModule)});
    const db = await openDatabase({ client: 'sqlite', filename: ${JSON.stringify(path.join(dir, 'db.sqlite'))} });
    await db.knex.raw('select 1');
    await db.knex.destroy();`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the process did not exit within 20 s')), 20_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.is(code, 0, stderr);
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
