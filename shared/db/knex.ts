// The database handle: knex on better-sqlite3 (a file in DATA_DIR) or on PostgreSQL.
import fs from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import type { Config } from '../config.ts';
import { migrationSource } from '../../migrations/index.ts';
import { SERVING_AUTOCHECKPOINT_PAGES, startCheckpointer, type Checkpointer } from './sqlite-checkpointer.ts';

export type Dialect = 'sqlite' | 'pg';

export interface Db {
  knex: Knex;
  dialect: Dialect;
  /**
   * SQLite only: `PRAGMA data_version` of the process's one connection, read synchronously (no
   * knex round trip): it changes when another process commits to the file (see dialect.ts).
   */
  sqliteDataVersion?: () => number | null;
  /**
   * SQLite only: the pool's one connection when no knex query or transaction holds it and none is
   * waiting for it, else null. Valid until the caller next yields to the event loop.
   */
  sqliteIdleConnection?: () => unknown;
  /**
   * PostgreSQL only: whether a server process (a NOTIFY's sender) is one of this pool's
   * connections, i.e. the change it announces was committed here and announced locally already.
   */
  ownsBackend?: (pid: number) => boolean;
  /** SQLite only: the worker that checkpoints the WAL off the event loop (sqlite-checkpointer.ts) */
  checkpointer?: Checkpointer;
  close(): Promise<void>;
}

const DEFAULT_TIMEOUTS: Config['databaseTimeouts'] = { queryMs: 15_000, acquireMs: 10_000 };

export function createDb(database: Config['database'], timeouts: Config['databaseTimeouts'] = DEFAULT_TIMEOUTS): Db {
  if (database.client === 'pg') {
    const backends = new Set<number>();
    const knex = knexFactory({
      client: 'pg',
      // statement_timeout: the server cancels a runaway query. query_timeout: the client gives up
      // on a server that stopped answering at all (a hung host or network), which the server-side
      // limit cannot catch. connectionTimeoutMillis: a connect that gets no answer.
      connection: {
        connectionString: database.url,
        statement_timeout: timeouts.queryMs,
        query_timeout: timeouts.queryMs + 1_000,
        connectionTimeoutMillis: timeouts.acquireMs,
      },
      // waiting for a free (or new) connection is bounded too: a pool full of hung queries must not
      // queue requests forever
      acquireConnectionTimeout: timeouts.acquireMs,
      pool: {
        min: 0,
        max: 10,
        afterCreate(conn: { processID?: number; once(event: 'end', fn: () => void): void }, done: (err: Error | null, conn: unknown) => void) {
          const pid = conn.processID;
          if (pid !== undefined) {
            backends.add(pid);
            conn.once('end', () => backends.delete(pid));
          }
          done(null, conn);
        },
      },
    });
    return { knex, dialect: 'pg', ownsBackend: (pid) => backends.has(pid), close: () => knex.destroy() };
  }
  fs.mkdirSync(path.dirname(database.filename), { recursive: true });
  // the pool's one connection, kept for the synchronous data_version read (replaced if the pool
  // ever makes a new one)
  let dataVersion: { get(): unknown } | null = null;
  let connection: { open: boolean; inTransaction: boolean } | null = null;
  // started by the first connection, once the file exists in WAL mode
  let checkpointer: Checkpointer | undefined;
  const knex = knexFactory({
    client: 'better-sqlite3',
    connection: { filename: database.filename },
    useNullAsDefault: true,
    // no acquireConnectionTimeout: the one connection is shared by every request of the process,
    // so queueing for it is normal under load, and a local file cannot hang like a server can
    // (busy_timeout bounds waiting for another process's write lock)
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: any, done: (err: Error | null, conn: unknown) => void) {
        try {
          // WAL lets readers in other processes (a separate runner) proceed during a write;
          // busy_timeout makes a second writer wait for the lock instead of failing at once.
          conn.pragma('journal_mode = WAL');
          conn.pragma('synchronous = NORMAL');
          conn.pragma('foreign_keys = ON');
          conn.pragma('busy_timeout = 10000');
          // checkpoints are the worker's (below); this is the safety net if it falls behind
          conn.pragma(`wal_autocheckpoint = ${SERVING_AUTOCHECKPOINT_PAGES}`);
          cachePreparedStatements(conn);
          connection = conn;
          dataVersion = conn.prepare('PRAGMA data_version').pluck();
          checkpointer ??= startCheckpointer(database.filename, (message) => process.emitWarning(`SQLite checkpoint: ${message}`));
          done(null, conn);
        } catch (err) {
          done(err as Error, conn);
        }
      },
    },
  });
  return {
    knex,
    dialect: 'sqlite',
    get checkpointer() {
      return checkpointer;
    },
    sqliteDataVersion: () => (connection?.open && dataVersion ? Number(dataVersion.get()) : null),
    sqliteIdleConnection: () => {
      const pool = knex.client.pool as { numUsed(): number; numFree(): number; numPendingAcquires(): number } | undefined;
      if (!connection?.open || connection.inTransaction || !pool) return null;
      return pool.numUsed() === 0 && pool.numFree() === 1 && pool.numPendingAcquires() === 0 ? connection : null;
    },
    close: async () => {
      await checkpointer?.close();
      await knex.destroy();
    },
  };
}

/** Distinct SQL texts whose prepared statements a connection keeps (least recently used go first). */
const PREPARED_STATEMENTS_KEPT = 500;

/**
 * knex's better-sqlite3 client prepares every query it runs, and preparing (parsing and planning)
 * costs about as much as running a small query: a connection keeps its statements by SQL text
 * instead, so a hot path's queries are prepared once. knex runs them with all()/run() and binds
 * on every call; it changes a statement's mode only for the safeIntegers query option, which this
 * codebase does not use. The cache is bounded (whereIn lists of many lengths make many texts).
 */
function cachePreparedStatements(conn: { prepare(sql: string): unknown }): void {
  const prepare = conn.prepare.bind(conn);
  const kept = new Map<string, unknown>();
  conn.prepare = (sql: string) => {
    let statement = kept.get(sql);
    if (statement !== undefined) {
      kept.delete(sql);
    } else {
      statement = prepare(sql);
      if (kept.size >= PREPARED_STATEMENTS_KEPT) kept.delete(kept.keys().next().value!);
    }
    kept.set(sql, statement);
    return statement;
  };
}

export async function migrateLatest(db: Db): Promise<void> {
  await db.knex.migrate.latest({ migrationSource });
}

export async function openDatabase(database: Config['database'], timeouts?: Config['databaseTimeouts']): Promise<Db> {
  const db = createDb(database, timeouts);
  await migrateLatest(db);
  return db;
}
