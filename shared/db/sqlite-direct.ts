// SQLite only: a short write transaction run synchronously on the process's one connection, with
// statements prepared once per connection. For the hot paths (rollback): through knex every
// statement is a promise round trip through the pool and the query builder (~50 µs each on this
// driver, several times the statement itself), and the request waits for each in turn.
//
// The connection is knex's pool's one connection, used only while no knex query or transaction
// holds it: taken straight when the pool has it idle (nothing here awaits, so nobody can take it in
// between; acquiring through the pool costs two promise hops and a timer), acquired otherwise.
// BEGIN IMMEDIATE takes the database's write lock first, as lockFunctionRow's no-op write does
// (a transaction that read first and wrote later could be refused with SQLITE_BUSY when another
// process wrote in between). Nothing here awaits: the event loop is held only for the statements.
import { AsyncResource } from 'node:async_hooks';
import type { Db } from './knex.ts';
import { TurnBatcher, type Outcome } from './turn-batch.ts';

interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

interface Connection {
  prepare(sql: string): Statement;
  transaction<T>(fn: () => T): { (): T; immediate(): T };
  readonly inTransaction: boolean;
}

/** Runs `sql` on the transaction's connection, prepared once per connection. */
export interface SqliteTx {
  get<T>(sql: string, ...params: unknown[]): T | undefined;
  run(sql: string, ...params: unknown[]): number;
}

const prepared = new WeakMap<Connection, Map<string, Statement>>();

function statement(conn: Connection, sql: string): Statement {
  let cache = prepared.get(conn);
  if (!cache) prepared.set(conn, (cache = new Map()));
  let stmt = cache.get(sql);
  if (!stmt) cache.set(sql, (stmt = conn.prepare(sql)));
  return stmt;
}

function txOn(conn: Connection): SqliteTx {
  return {
    get: <R>(sql: string, ...params: unknown[]) => statement(conn, sql).get(...params) as R | undefined,
    run: (sql, ...params) => statement(conn, sql).run(...params).changes,
  };
}

/** `fn` inside BEGIN IMMEDIATE … COMMIT (ROLLBACK when it throws), synchronously. */
export async function sqliteImmediate<T>(db: Db, fn: (tx: SqliteTx) => T): Promise<T> {
  return withConnection(db, 'sqliteImmediate', (conn) => conn.transaction(() => fn(txOn(conn))).immediate());
}

/** Transactions committed together at most: the event loop is held for the whole group (~0.1 ms each). */
export const GROUP_COMMIT_MAX = 16;
const groups = new WeakMap<Db, TurnBatcher<(tx: SqliteTx) => unknown, unknown>>();

/**
 * sqliteImmediate for a write many requests make at once (a deploy's allocation): the
 * transactions asked for in one turn of the event loop commit together, each in a savepoint of
 * its own. One BEGIN IMMEDIATE and one COMMIT for the group instead of one each, and the pages
 * they share written to the WAL once: `/deploy` at 16 clients went from 1,238–1,440 to
 * 1,896–2,378 requests a second (docs/benchmarks.md, issue 15's fifth pass). A `fn` that throws
 * rolls back its own savepoint only and rejects its own caller; the others commit. Each sees what
 * the ones before it in the group wrote, as if they had committed one after the other (they are
 * serialized all the same). Nothing is committed, or answered, before the group's COMMIT; a failed
 * COMMIT rejects every caller of the group.
 */
export function sqliteGroupImmediate<T>(db: Db, fn: (tx: SqliteTx) => T): Promise<T> {
  if (db.dialect !== 'sqlite') throw new Error('sqliteGroupImmediate is for SQLite only');
  let group = groups.get(db);
  if (!group) groups.set(db, (group = new TurnBatcher({ max: GROUP_COMMIT_MAX, concurrency: 1, run: (jobs) => commitGroup(db, jobs) })));
  // Each job runs in its own caller's async context, not in the context of whichever caller
  // scheduled the flush: a deployment records the id of the request that asked for it
  // (currentRequestId), and the versions of one group were all recorded with the first's.
  // runInAsyncScope rather than AsyncResource.bind: on Node 20 bind also defines a deprecated
  // accessor pair on every bound function, ~6 % of a /deploy's CPU on SQLite in a profile.
  const caller = new AsyncResource('containerpub.sqliteGroup');
  return group.submit((tx: SqliteTx) => caller.runInAsyncScope(fn, null, tx))! as Promise<T>;
}

function commitGroup(db: Db, jobs: ((tx: SqliteTx) => unknown)[]): Promise<Outcome<unknown>[]> {
  return withConnection(db, 'sqliteGroupImmediate', (conn) => {
    const tx = txOn(conn);
    return conn
      .transaction(() =>
        jobs.map((job): Outcome<unknown> => {
          try {
            // nested in the group's transaction: a SAVEPOINT, rolled back alone when it throws
            return { ok: true, value: conn.transaction(() => job(tx))() };
          } catch (err) {
            // an error that ended the whole transaction (SQLite rolls back itself on some I/O
            // errors) fails the group: what ran before it is gone too
            if (!conn.inTransaction) throw err;
            return { ok: false, err };
          }
        }),
      )
      .immediate();
  });
}

/** Reads on the transaction's connection, prepared once per connection. */
export interface SqliteReader {
  get<T>(sql: string, ...params: unknown[]): T | undefined;
  all<T>(sql: string, ...params: unknown[]): T[];
}

/**
 * `fn`'s reads in one read transaction (one snapshot), synchronously, on the pool's connection
 * (so no knex transaction is open on it meanwhile: its uncommitted writes are never seen). For
 * hot reads that knex would make a promise round trip each.
 */
export async function sqliteRead<T>(db: Db, fn: (r: SqliteReader) => T): Promise<T> {
  return withConnection(db, 'sqliteRead', (conn) => {
    const r: SqliteReader = {
      get: <R>(sql: string, ...params: unknown[]) => statement(conn, sql).get(...params) as R | undefined,
      all: <R>(sql: string, ...params: unknown[]) => statement(conn, sql).all(...params) as R[],
    };
    return conn.transaction(() => fn(r))();
  });
}

/** `run` on the pool's connection, synchronously: the idle one at once, or once the pool gives it. */
async function withConnection<T>(db: Db, caller: string, run: (conn: Connection) => T): Promise<T> {
  if (db.dialect !== 'sqlite') throw new Error(`${caller} is for SQLite only`);
  const idle = db.sqliteIdleConnection?.() as Connection | null | undefined;
  if (idle) return run(idle);
  const client = db.knex.client as { acquireConnection(): Promise<Connection>; releaseConnection(c: Connection): Promise<void> };
  const conn = await client.acquireConnection();
  try {
    return run(conn);
  } finally {
    await client.releaseConnection(conn);
  }
}
