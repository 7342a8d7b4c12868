// The SQLite connection keeps its prepared statements by SQL text (shared/db/knex.ts): a query run
// again is not prepared again, results stay right across bindings, and the cache is bounded.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDb } from '../../shared/db/knex.ts';

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

test.run();
