// pg-direct.ts: values written into SQL as literals come back from PostgreSQL exactly as they went
// in (quotes, backslashes, placeholders inside values), a transaction that does not commit keeps
// nothing, a failed one leaves its connection usable, and the pool knows its own server processes
// (a NOTIFY from one of them is this process's own change).
import knexFactory from 'knex';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createDb, type Db } from '../../shared/db/knex.ts';
import { inline, literal, pgReads, pgTransaction } from '../../shared/db/pg-direct.ts';
import { createPgDatabase, postgresAvailable, requireService } from '../support/services.ts';

test('literals: text escaped, numbers, booleans and NULL as themselves, nothing else', () => {
  assert.is(literal("it's"), "'it''s'");
  assert.is(literal('a\\b'), " E'a\\\\b'");
  assert.is(literal(null), 'NULL');
  assert.is(literal(undefined), 'NULL');
  assert.is(literal(42), '42');
  assert.is(literal(true), 'TRUE');
  assert.throws(() => literal(Number.NaN), /finite/);
  assert.throws(() => literal({}), /literal/);
  // a `?` inside a value is not a placeholder
  assert.is(inline('SELECT ?, ?', ['?', 1]), "SELECT '?', 1");
  assert.throws(() => inline('SELECT ?, ?', [1]), /placeholders/);
  assert.throws(() => inline('SELECT ?', [1, 2]), /bindings/);
});

const pgUp = requireService('PostgreSQL', (await postgresAvailable()) === null, 'no server at TEST_DATABASE_URL');

/** A brand-new database behind a pool of one connection: whatever a failure left on it, the next use meets. */
async function withDb(fn: (db: Db, url: string) => Promise<void>): Promise<void> {
  const database = await createPgDatabase(undefined, 'cp_pgdirect');
  const knex = knexFactory({ client: 'pg', connection: database.url, pool: { min: 0, max: 1 } });
  const db: Db = { knex, dialect: 'pg', close: () => knex.destroy() };
  try {
    await db.knex.raw('CREATE TABLE t (id int PRIMARY KEY, v text)');
    await fn(db, database.url);
  } finally {
    await db.close();
    await database.drop();
  }
}

if (pgUp) {
  test('values come back from PostgreSQL as they were sent', async () => {
    await withDb(async (db) => {
      const values = ["it's", 'back\\slash', "\\'; DROP TABLE t; --", '$1 ? $$ E\'x\'', 'ünï ✓', ''];
      for (const v of values) {
        const [[row]] = (await pgReads(db, 'SELECT ? AS v, ? AS n, ? AS b', [v, 7, false])) as { v: string; n: number; b: boolean }[][];
        assert.equal(row, { v, n: 7, b: false });
      }
      assert.is(Number(((await db.knex('t').count({ n: '*' })) as { n: string }[])[0].n), 0, 'the table is still there');
    });
  });

  test('a transaction keeps its writes only when it commits; a failed one leaves the connection clean', async () => {
    await withDb(async (db) => {
      const ids = async () => ((await db.knex('t').orderBy('id').pluck('id')) as number[]);
      // commit: kept
      const read = await pgTransaction(db, async (tx) => {
        const [rows] = await tx.run({ sql: 'SELECT count(*)::int AS n FROM t' });
        await tx.commit({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', bindings: [1, 'one'] });
        return rows;
      });
      assert.equal(read, [{ n: 0 }], 'each statement of the message has its own rows, BEGIN and COMMIT left out');
      assert.equal(await ids(), [1]);
      // no commit: rolled back
      await pgTransaction(db, async (tx) => {
        await tx.run({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', bindings: [2, 'two'] });
      });
      assert.equal(await ids(), [1], 'a return without commit keeps nothing');
      // a statement that fails in the committing message: nothing kept, the error thrown
      try {
        await pgTransaction(db, async (tx) => {
          await tx.run({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', bindings: [3, 'three'] });
          await tx.commit({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', bindings: [1, 'again'] });
        });
        assert.unreachable('the duplicate key throws');
      } catch (err) {
        assert.is((err as { code?: string }).code, '23505');
      }
      // the pool's one connection is out of the aborted transaction: knex works on it
      assert.equal(await ids(), [1]);
      // a throw in the middle: rolled back too
      try {
        await pgTransaction(db, async (tx) => {
          await tx.run({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', bindings: [4, 'four'] });
          throw new Error('decided otherwise');
        });
      } catch (err) {
        assert.is((err as Error).message, 'decided otherwise');
      }
      assert.equal(await ids(), [1]);
    });
  });

  test('a prepared statement is prepared once per connection, in a message of its own: a failed transaction keeps its connection, a failed PREPARE drops it', async () => {
    await withDb(async (db) => {
      const insert = (id: number, v: string) => ({ sql: 'INSERT INTO t (id, v) VALUES (?, ?) RETURNING id', bindings: [id, v], prepare: true });
      const count = { sql: 'SELECT count(*)::int AS n FROM t WHERE v <> ?', bindings: ["it's"], prepare: true };
      for (let id = 1; id <= 7; id++) {
        // past 5 executions PostgreSQL may plan it generically: still the same answers
        const [inserted, [{ n }]] = (await pgTransaction(db, (tx) => tx.commit(insert(id, `v${id}`), count))) as [{ id: number }[], { n: number }[]];
        assert.equal(inserted, [{ id }]);
        assert.is(n, id);
      }
      const prepared = async () => ((await db.knex.raw("SELECT name FROM pg_prepared_statements WHERE name LIKE 'cp\\_%'")).rows as { name: string }[]).length;
      assert.is(await prepared(), 2, "two statements, each prepared once on the pool's one connection");
      const pid = async () => ((await db.knex.raw('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number }).pid;
      const before = await pid();
      // fails in the transaction's message, after preparing a third statement: nothing kept, the
      // connection serves on, with its three statements
      const duplicate = { sql: 'INSERT INTO t (id, v) VALUES (?, ?)', bindings: [1, 'dup'], prepare: true };
      try {
        await pgTransaction(db, (tx) => tx.commit(insert(8, 'v8'), duplicate));
        assert.unreachable('the duplicate key throws');
      } catch (err) {
        assert.is((err as { code?: string }).code, '23505');
      }
      assert.is(await pid(), before, 'the same connection');
      assert.is(await prepared(), 3);
      const [[{ n }]] = (await pgTransaction(db, (tx) => tx.run(count))) as { n: number }[][];
      assert.is(n, 7, 'the failed transaction kept nothing');
      // the prepared statement that failed works on it, with other values
      await pgTransaction(db, (tx) => tx.commit({ ...duplicate, bindings: [9, 'nine'] }));
      assert.is(await pid(), before);
      // a PREPARE that fails (a statement PostgreSQL cannot parse): that connection is not used again
      try {
        await pgTransaction(db, (tx) => tx.run({ sql: 'SELEC ?', bindings: [1], prepare: true }));
        assert.unreachable('the syntax error throws');
      } catch (err) {
        assert.is((err as { code?: string }).code, '42601');
      }
      assert.is.not(await pid(), before, 'a new connection');
      // and the statements are prepared again there
      const [[{ n: again }]] = (await pgTransaction(db, (tx) => tx.run(count))) as { n: number }[][];
      assert.is(again, 8);
    });
  });

  test("the pool knows its own server processes (a NOTIFY's sender)", async () => {
    await withDb(async (scratch, url) => {
      const db = createDb({ client: 'pg', url } as never);
      try {
        const [[{ pid }]] = (await pgReads(db, 'SELECT pg_backend_pid() AS pid')) as { pid: number }[][];
        assert.ok(db.ownsBackend?.(pid), 'a connection of the pool');
        const [[{ pid: otherPid }]] = (await pgReads(scratch, 'SELECT pg_backend_pid() AS pid')) as { pid: number }[][];
        assert.is.not(otherPid, pid);
        assert.not.ok(db.ownsBackend?.(otherPid), "another pool's connection");
      } finally {
        await db.close();
      }
    });
  });
}

test.run();
