// sqliteGroupImmediate (shared/db/sqlite-direct.ts): the transactions asked for in one turn of the
// event loop commit together, each in a savepoint of its own. Another connection to the same file
// (as another process would be) shows what is committed when.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDb, type Db } from '../../shared/db/knex.ts';
import { GROUP_COMMIT_MAX, sqliteGroupImmediate } from '../../shared/db/sqlite-direct.ts';
import { currentRequestId, withRequestId } from '../../shared/observability/request-context.ts';

async function withDb(run: (db: Db, other: Database.Database) => Promise<void>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-group-'));
  const file = path.join(dir, 'db.sqlite');
  const db = createDb({ client: 'sqlite', filename: file } as any);
  await db.knex.schema.createTable('t', (t) => {
    t.integer('id').primary();
    t.string('name');
  });
  const other = new Database(file, { readonly: true });
  try {
    await run(db, other);
  } finally {
    other.close();
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const committed = (other: Database.Database) => (other.prepare('SELECT id FROM t ORDER BY id').all() as { id: number }[]).map((r) => r.id);

test('asked in one turn: one transaction; each sees the writes before it, nobody else sees any before the commit', async () => {
  await withDb(async (db, other) => {
    const seen: { mine: number[]; outside: number[] }[] = [];
    const results = await Promise.all(
      [1, 2, 3].map((id) =>
        sqliteGroupImmediate(db, (tx) => {
          tx.run('INSERT INTO t (id, name) VALUES (?, ?)', id, `n${id}`);
          seen.push({ mine: (tx.get<{ ids: string }>('SELECT group_concat(id) AS ids FROM t')!.ids ?? '').split(',').map(Number), outside: committed(other) });
          return id * 10;
        }),
      ),
    );
    assert.equal(results, [10, 20, 30], 'each caller gets its own result');
    assert.equal(seen.map((s) => s.mine), [[1], [1, 2], [1, 2, 3]]);
    assert.equal(seen.map((s) => s.outside), [[], [], []], 'nothing committed until the whole group is');
    assert.equal(committed(other), [1, 2, 3]);
  });
});

test("each runs in its own caller's request context, not the first caller's", async () => {
  await withDb(async (db) => {
    // the deploys of one group record the ids of the requests that asked for them (versions.ts)
    const ids = await Promise.all(['req-a', 'req-b', 'req-c'].map((id) => withRequestId(id, () => sqliteGroupImmediate(db, () => currentRequestId()))));
    assert.equal(ids, ['req-a', 'req-b', 'req-c']);
    const outside = await sqliteGroupImmediate(db, () => currentRequestId());
    assert.is(outside, undefined, 'a job asked for outside any request runs outside any');
  });
});

test('one that throws rolls back its own writes only and rejects its own caller; the others commit', async () => {
  await withDb(async (db, other) => {
    const asked = [1, 2, 3].map((id) =>
      sqliteGroupImmediate(db, (tx) => {
        tx.run('INSERT INTO t (id, name) VALUES (?, ?)', id, `n${id}`);
        if (id === 2) throw new Error('refused after writing');
        return id;
      }),
    );
    const settled = await Promise.allSettled(asked);
    assert.equal(settled.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.is(((settled[1] as PromiseRejectedResult).reason as Error).message, 'refused after writing');
    assert.equal(committed(other), [1, 3]);
    // and a constraint the database itself enforces, in a later group
    const dup = await Promise.allSettled([4, 1, 5].map((id) => sqliteGroupImmediate(db, (tx) => tx.run('INSERT INTO t (id, name) VALUES (?, ?)', id, 'x'))));
    assert.equal(dup.map((s) => s.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((dup[1] as PromiseRejectedResult).reason), /UNIQUE|PRIMARY KEY/);
    assert.equal(committed(other), [1, 3, 4, 5]);
  });
});

test(`more than ${GROUP_COMMIT_MAX} in one turn: groups of ${GROUP_COMMIT_MAX}, committed one after the other`, async () => {
  await withDb(async (db, other) => {
    const n = GROUP_COMMIT_MAX * 2 + 3;
    const outside: number[] = [];
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        sqliteGroupImmediate(db, (tx) => {
          outside.push(committed(other).length);
          tx.run('INSERT INTO t (id, name) VALUES (?, ?)', i + 1, 'x');
        }),
      ),
    );
    const expected = Array.from({ length: n }, (_, i) => Math.floor(i / GROUP_COMMIT_MAX) * GROUP_COMMIT_MAX);
    assert.equal(outside, expected, 'each group sees the groups before it committed, and nothing of its own');
    assert.is(committed(other).length, n);
  });
});

test('asked in different turns: separate transactions', async () => {
  await withDb(async (db, other) => {
    await sqliteGroupImmediate(db, (tx) => tx.run('INSERT INTO t (id, name) VALUES (1, ?)', 'a'));
    const outside = await sqliteGroupImmediate(db, (tx) => {
      tx.run('INSERT INTO t (id, name) VALUES (2, ?)', 'b');
      return committed(other);
    });
    assert.equal(outside, [1]);
  });
});

test.run();
