// PostgreSQL only: a short transaction in as few round trips as it needs, on one of knex's pooled
// connections. For the hot paths (rollback): through knex every statement is a round trip of its
// own, with knex's work around each (BEGIN, the lock, the read, the write, COMMIT: five), and
// the request waits for each in turn. Here the simple query protocol carries several statements in
// one message: the same transaction is two round trips, BEGIN + lock + read, then write + COMMIT.
//
// The simple protocol has no parameters, so `?` placeholders are filled in as literals: text with
// pg's own escaping (quotes doubled, E'' for backslashes), numbers, booleans and NULL as themselves.
// The connection's limits still hold: statement_timeout on the server, query_timeout in the client.
import { createHash } from 'node:crypto';
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

/** One statement; `prepare`: made a prepared statement of this connection's on first use (below). */
export interface PgStatement {
  sql: string;
  bindings?: readonly unknown[];
  prepare?: boolean;
}

export interface PgTx {
  /** The statements in one message, the first run opening the transaction; each statement's rows. */
  run(...statements: PgStatement[]): Promise<Row[][]>;
  /** run(), then COMMIT in the same message. */
  commit(...statements: PgStatement[]): Promise<Row[][]>;
}

/**
 * `fn` in one transaction on one pooled connection. A return without commit() rolls back (a read
 * that decided to go another way keeps nothing); so does a throw, and a connection whose ROLLBACK
 * fails is dropped from the pool rather than handed out mid-transaction.
 *
 * A statement with `prepare` is sent as EXECUTE, after a PREPARE the first time on this
 * connection: the server parses it once per connection, and plans it once it has a generic plan,
 * instead of both on every call (a rollback's 5-table read and its write: p50 2.9 → 2.6 ms in the
 * bench). The PREPAREs go in a message of their own, before the one that needs them (one more
 * round trip, once per connection and statement): a statement that fails in the transaction's
 * message then leaves no doubt about which statements exist, and its connection serves on. A
 * failed PREPARE does leave that doubt: its connection is dropped from the pool.
 */
export function pgTransaction<T>(db: Db, fn: (tx: PgTx) => Promise<T>): Promise<T> {
  return withConnection(db, async (conn) => {
    let open = false;
    const send = async (statements: PgStatement[], commit: boolean): Promise<Row[][]> => {
      const message = compose(conn, statements);
      if (message.preparing.length > 0) await prepare(conn, message.preparing);
      const begin = !open;
      open = true;
      const out = await conn.query(`${begin ? 'BEGIN; ' : ''}${message.text}${commit ? '; COMMIT' : ''}`);
      if (commit) open = false;
      const results = (Array.isArray(out) ? out : [out]).slice(begin ? 1 : 0, commit ? -1 : undefined);
      return results.map((r) => r.rows);
    };
    const tx: PgTx = {
      run: (...statements) => send(statements, false),
      commit: (...statements) => send(statements, true),
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

/** The names of the statements each connection has prepared (a session's, so a connection's). */
const prepared = new WeakMap<Connection, Set<string>>();

function preparedOn(conn: Connection): Set<string> {
  let names = prepared.get(conn);
  if (!names) prepared.set(conn, (names = new Set()));
  return names;
}

/** The names of prepared statements by their SQL (a digest each, computed once). */
const statementNames = new Map<string, string>();
/** Statement texts named at most: beyond, the digests are computed again (a bound, never reached by the fixed set of hot statements). */
const MAX_STATEMENT_NAMES = 1_000;

function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = `cp_${createHash('sha1').update(sql).digest('hex').slice(0, 24)}`;
    if (statementNames.size >= MAX_STATEMENT_NAMES) statementNames.clear();
    statementNames.set(sql, name);
  }
  return name;
}

interface Preparing {
  name: string;
  sql: string;
}

/** The statements as one message's text (each prepared one as its EXECUTE), and the statements this connection must prepare first. */
function compose(conn: Connection, statements: PgStatement[]): { text: string; preparing: Preparing[] } {
  const parts: string[] = [];
  const preparing: Preparing[] = [];
  for (const st of statements) {
    const bindings = st.bindings ?? [];
    if (!st.prepare) {
      parts.push(inline(st.sql, bindings));
      continue;
    }
    const name = statementName(st.sql);
    if (!preparedOn(conn).has(name) && !preparing.some((p) => p.name === name)) preparing.push({ name, sql: st.sql });
    parts.push(bindings.length === 0 ? `EXECUTE ${name}` : `EXECUTE ${name}(${bindings.map(literal).join(', ')})`);
  }
  return { text: parts.join(';\n'), preparing };
}

/** PREPAREs, in a message of their own; a failure leaves which of them exist unknown, so the connection is not used again. */
async function prepare(conn: Connection, statements: Preparing[]): Promise<void> {
  const text = statements.map(({ name, sql }) => {
    let n = 0;
    return `PREPARE ${name} AS ${sql.replace(/\?/g, () => `$${++n}`)}`;
  });
  try {
    await conn.query(text.join(';\n'));
  } catch (err) {
    conn.__knex__disposed = err;
    throw err;
  }
  for (const { name } of statements) preparedOn(conn).add(name);
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
