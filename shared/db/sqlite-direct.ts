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
import type { Db } from './knex.ts';

interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

interface Connection {
  prepare(sql: string): Statement;
  transaction<T>(fn: () => T): { (): T; immediate(): T };
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

/** `fn` inside BEGIN IMMEDIATE … COMMIT (ROLLBACK when it throws), synchronously. */
export async function sqliteImmediate<T>(db: Db, fn: (tx: SqliteTx) => T): Promise<T> {
  return withConnection(db, 'sqliteImmediate', (conn) => {
    const tx: SqliteTx = {
      get: <R>(sql: string, ...params: unknown[]) => statement(conn, sql).get(...params) as R | undefined,
      run: (sql, ...params) => statement(conn, sql).run(...params).changes,
    };
    return conn.transaction(() => fn(tx)).immediate();
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
