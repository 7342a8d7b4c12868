// The SQLite connection keeps its prepared statements by SQL text (shared/db/knex.ts): a query run
// again is not prepared again, results stay right across bindings, and the cache is bounded.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDb } from '../../shared/db/knex.ts';
import { sqliteImmediate, sqliteRead } from '../../shared/db/sqlite-direct.ts';

test('statements are prepared once per SQL text, and the cache is bounded', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-stmts-'));
  const db = createDb({ client: 'sqlite', filename: path.join(dir, 'db.sqlite') } as any);
  try {
    await db.knex.schema.createTable('t', (t) => {
      t.integer('id').primary();
      t.string('name');
    });
    // the pool's one connection: borrowed to reach it, and given back before knex needs it
    const conn: any = await db.knex.client.acquireConnection();
    await db.knex.client.releaseConnection(conn);
    {
      assert.is(conn.prepare('SELECT 1'), conn.prepare('SELECT 1'), 'the same statement object for the same text');
      // knex's queries go through it, with their bindings each time
      for (let i = 1; i <= 5; i++) await db.knex('t').insert({ id: i, name: `n${i}` });
      for (let i = 1; i <= 5; i++) assert.is((await db.knex('t').where({ id: i }).first()).name, `n${i}`);
      const first = conn.prepare('SELECT 0 AS n');
      for (let i = 1; i <= 600; i++) conn.prepare(`SELECT ${i} AS n`);
      assert.is.not(conn.prepare('SELECT 0 AS n'), first, 'the least recently used went out past the bound');
      assert.is(conn.prepare('SELECT 0 AS n').get().n, 0);
    }
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a direct transaction takes the idle connection at once, and waits while a knex transaction holds it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-stmts-'));
  const db = createDb({ client: 'sqlite', filename: path.join(dir, 'db.sqlite') } as any);
  try {
    await db.knex.schema.createTable('t', (t) => {
      t.integer('id').primary();
      t.integer('n');
    });
    await db.knex('t').insert({ id: 1, n: 0 });
    assert.ok(db.sqliteIdleConnection!(), 'nothing holds the connection: it is idle');
    // idle: the whole transaction runs before the call returns its promise
    let ran = false;
    const direct = sqliteImmediate(db, (tx) => {
      ran = true;
      return tx.run('UPDATE t SET n = n + 1 WHERE id = 1');
    });
    assert.ok(ran, 'run synchronously on the idle connection');
    assert.is(await direct, 1);

    // a knex transaction holds the connection across awaits: a direct write or read must neither
    // interleave with it nor see its uncommitted write, but wait for its end
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let inside!: () => void;
    const started = new Promise<void>((resolve) => (inside = resolve));
    const trx = db.knex.transaction(async (t) => {
      await t('t').where({ id: 1 }).update({ n: 100 });
      inside();
      await held;
      await t('t').where({ id: 1 }).update({ n: 200 });
    });
    await started;
    assert.is(db.sqliteIdleConnection!(), null, 'held by the knex transaction');
    const order: string[] = [];
    const write = sqliteImmediate(db, (tx) => {
      order.push('direct write');
      return tx.run('UPDATE t SET n = n + 1 WHERE id = 1');
    });
    const read = sqliteRead(db, (r) => r.get<{ n: number }>('SELECT n FROM t WHERE id = 1')!.n);
    assert.equal(order, [], 'the direct write waits');
    order.push('knex commit');
    release();
    await trx;
    assert.is(await write, 1);
    assert.equal(order, ['knex commit', 'direct write']);
    assert.ok([200, 201].includes(await read), 'the read saw committed state only');
    assert.is((await db.knex('t').where({ id: 1 }).first()).n, 201);
  } finally {
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
