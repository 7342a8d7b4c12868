// PostgreSQL only: a short transaction in as few round trips as it needs, on one of knex's pooled
// connections. For the hot paths (rollback): through knex every statement is a round trip of its
// own, with knex's work around each (BEGIN, the lock, the read, the write, COMMIT: five), and
// the request waits for each in turn. Here the simple query protocol carries several statements in
// one message: the same transaction is two round trips, BEGIN + lock + read, then write + COMMIT.
//
// The simple protocol has no parameters, so `?` placeholders are filled in as literals: text with
// pg's own escaping (quotes doubled, E'' for backslashes), numbers, booleans and NULL as themselves.
// The connection's limits still hold: statement_timeout on the server, query_timeout in the client.
import { escapeLiteral } from 'pg';
import type { Db } from './knex.ts';

type Row = unknown;

interface Result {
  rows: Row[];
}

interface Connection {
  query(sql: string): Promise<Result | Result[]>;
  /** knex's mark for a connection its pool must not hand out again */
  __knex__disposed?: unknown;
}

export interface PgTx {
  /** The statements (`;`-separated) in one message, the first run opening the transaction; each statement's rows. */
  run(sql: string, bindings?: readonly unknown[]): Promise<Row[][]>;
  /** run(), then COMMIT in the same message. */
  commit(sql: string, bindings?: readonly unknown[]): Promise<Row[][]>;
}

/**
 * `fn` in one transaction on one pooled connection. A return without commit() rolls back (a read
 * that decided to go another way keeps nothing); so does a throw, and a connection whose ROLLBACK
 * fails is dropped from the pool rather than handed out mid-transaction.
 */
export function pgTransaction<T>(db: Db, fn: (tx: PgTx) => Promise<T>): Promise<T> {
  return withConnection(db, async (conn) => {
    let open = false;
    const send = async (sql: string, bindings: readonly unknown[], commit: boolean): Promise<Row[][]> => {
      const begin = !open;
      open = true;
      const out = await conn.query(`${begin ? 'BEGIN; ' : ''}${inline(sql, bindings)}${commit ? '; COMMIT' : ''}`);
      if (commit) open = false;
      const results = (Array.isArray(out) ? out : [out]).map((r) => r.rows);
      return results.slice(begin ? 1 : 0, commit ? -1 : undefined);
    };
    const tx: PgTx = {
      run: (sql, bindings = []) => send(sql, bindings, false),
      commit: (sql, bindings = []) => send(sql, bindings, true),
    };
    try {
      const result = await fn(tx);
      if (open) await conn.query('ROLLBACK');
      return result;
    } catch (err) {
      if (open) {
        try {
          await conn.query('ROLLBACK');
        } catch (rollbackErr) {
          conn.__knex__disposed = rollbackErr;
        }
      }
      throw err;
    }
  });
}

/**
 * Reads in one message and one round trip, outside any transaction: each statement sees what was
 * committed when it started. Each statement's rows.
 */
export function pgReads(db: Db, sql: string, bindings: readonly unknown[] = []): Promise<Row[][]> {
  return withConnection(db, async (conn) => {
    const out = await conn.query(inline(sql, bindings));
    return (Array.isArray(out) ? out : [out]).map((r) => r.rows);
  });
}

async function withConnection<T>(db: Db, fn: (conn: Connection) => Promise<T>): Promise<T> {
  if (db.dialect !== 'pg') throw new Error('pg-direct is for PostgreSQL only');
  const client = db.knex.client as { acquireConnection(): Promise<Connection>; releaseConnection(c: Connection): Promise<void> };
  const conn = await client.acquireConnection();
  try {
    return await fn(conn);
  } finally {
    await client.releaseConnection(conn);
  }
}

/** `sql` with each `?` replaced by its binding as a literal (no `?` may appear in its own literals). */
export function inline(sql: string, bindings: readonly unknown[]): string {
  let i = 0;
  const text = sql.replace(/\?/g, () => {
    if (i >= bindings.length) throw new Error(`inline: more placeholders than the ${bindings.length} bindings`);
    return literal(bindings[i++]);
  });
  if (i !== bindings.length) throw new Error(`inline: ${bindings.length} bindings for ${i} placeholders`);
  return text;
}

export function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`inline: ${value} is not a finite number`);
    return String(value);
  }
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (typeof value === 'string') return escapeLiteral(value);
  if (value instanceof Date) return escapeLiteral(value.toISOString());
  throw new Error(`inline: cannot write a ${typeof value} as a literal`);
}
