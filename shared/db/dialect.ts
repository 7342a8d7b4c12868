// Every SQLite-vs-PostgreSQL difference the domain needs, in one place.
import type { Knex } from 'knex';
import type { Db } from './knex.ts';

export function withTransaction<T>(db: Db, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return db.knex.transaction(fn);
}

/**
 * Serialize writers of one row's aggregate for the rest of the transaction; false when the row
 * does not exist. PostgreSQL: FOR NO KEY UPDATE, which excludes other lockers but not the KEY SHARE
 * lock a foreign-key check takes, so inserting an event (or a function) that references the row
 * never waits on, or deadlocks with, the lock. SQLite: a no-op write, which takes the database
 * write lock at once: a transaction that read first and wrote later could be refused with
 * SQLITE_BUSY when another process wrote in between, whatever busy_timeout says.
 */
async function lockRow(db: Db, trx: Knex.Transaction, table: 'functions' | 'users', id: string): Promise<boolean> {
  if (db.dialect === 'pg') {
    const rows = await trx(table).select('id').where({ id }).forNoKeyUpdate();
    return rows.length > 0;
  }
  const n = await trx(table).where({ id }).update({ id });
  return n > 0;
}

/** Serializes writers of one function (versions, activation, cleanup of it). */
export function lockFunctionRow(db: Db, trx: Knex.Transaction, functionId: string): Promise<boolean> {
  return lockRow(db, trx, 'functions', functionId);
}

/**
 * Every version row of a function, locked in id order (PostgreSQL) for a writer that holds the
 * function's lock and is about to change or remove them all: the function's deletion. Taken before
 * the row lock that the deletion's own DELETE needs (FOR UPDATE, which waits for the KEY SHARE
 * locks of foreign-key checks), so that a complete or a cleanup holding one of these rows and
 * about to insert an event finishes first instead of deadlocking with it. SQLite: the write lock
 * that lockFunctionRow took covers them.
 */
export async function lockVersionRows(db: Db, query: Knex.QueryBuilder): Promise<unknown[]> {
  return db.dialect === 'pg' ? query.orderBy('id').forUpdate() : query;
}

/**
 * lockFunctionRow for many functions at once (a batch of retention cleanup); returns the ids that
 * exist. PostgreSQL: one SELECT … FOR NO KEY UPDATE, locking in id order, the order every
 * multi-function locker uses, so two of them cannot deadlock. SQLite: the write lock is the whole
 * database's, so one no-op write takes it for all of them.
 */
export async function lockFunctionRows(db: Db, trx: Knex.Transaction, functionIds: readonly string[]): Promise<Set<string>> {
  if (functionIds.length === 0) return new Set();
  if (db.dialect === 'pg') {
    const rows: { id: string }[] = await trx('functions').select('id').whereIn('id', functionIds).orderBy('id').forNoKeyUpdate();
    return new Set(rows.map((r) => r.id));
  }
  await trx('functions').where({ id: functionIds[0] }).update({ id: functionIds[0] });
  const rows: { id: string }[] = await trx('functions').select('id').whereIn('id', functionIds);
  return new Set(rows.map((r) => r.id));
}

/** Serializes what one account allocates (quotas): taken before any function row lock. */
export function lockUserRow(db: Db, trx: Knex.Transaction, userId: string): Promise<boolean> {
  return lockRow(db, trx, 'users', userId);
}

/**
 * The database's clock as SQL: now, or `offsetMs` from now. Leases and retry times are written and
 * compared on this one clock, never on each host's: runners whose clocks disagree would otherwise
 * take over builds that are alive, or leave dead ones for too long. PostgreSQL: the statement's
 * start (timestamptz). SQLite: the same ISO-8601 text the platform writes (milliseconds, `Z`), so
 * it compares as text with every stored timestamp. Only a number is put into the SQL.
 */
export function dbTimeSql(db: Db, offsetMs = 0): string {
  const ms = Math.round(offsetMs);
  if (!Number.isFinite(ms)) throw new Error(`not a time offset: ${offsetMs}`);
  if (db.dialect === 'pg') return ms === 0 ? 'statement_timestamp()' : `(statement_timestamp() + interval '${ms} milliseconds')`;
  const iso = "'%Y-%m-%dT%H:%M:%fZ'";
  if (ms === 0) return `strftime(${iso}, 'now')`;
  return `strftime(${iso}, 'now', '${ms < 0 ? '-' : '+'}${(Math.abs(ms) / 1000).toFixed(3)} seconds')`;
}

/** dbTimeSql as a value for knex's builders (`.update({ at: dbTime(db) })`, `.where('at', '<', dbTime(db))`). */
export function dbTime(db: Db, offsetMs = 0): Knex.Raw {
  return db.knex.raw(dbTimeSql(db, offsetMs));
}

/** The database's clock now, in epoch milliseconds. */
export async function dbNowMs(db: Db, q: Knex | Knex.Transaction = db.knex): Promise<number> {
  const result = await q.raw(`SELECT ${dbTimeSql(db)} AS now`);
  const row = db.dialect === 'pg' ? result.rows[0] : result[0];
  return new Date(row.now).getTime();
}

/**
 * Rows passed as one JSON parameter (the `?` in the SQL returned), as a common table expression
 * named `name` with these columns, for a set-based `WITH … UPDATE … FROM name` that gives each row
 * its own values: one bound variable however many rows (SQLite allows 32,766), typed on
 * PostgreSQL, where a uuid column compares only with a uuid. MATERIALIZED: otherwise SQLite may
 * drive the join from an index of the updated table and scan the JSON once per row it finds
 * (2 s instead of 20 ms for 1,000 rows).
 */
export function jsonRowsCte(db: Db, name: string, columns: Record<string, 'uuid' | 'text' | 'integer' | 'timestamptz'>): string {
  const names = Object.keys(columns);
  for (const n of [name, ...names]) if (!/^[a-z_][a-z0-9_]*$/.test(n)) throw new Error(`not a plain SQL name: ${n}`);
  if (db.dialect === 'pg') {
    return `${name} AS MATERIALIZED (SELECT * FROM json_to_recordset(?::json) AS r(${names.map((n) => `${n} ${columns[n]}`).join(', ')}))`;
  }
  return `${name} AS MATERIALIZED (SELECT ${names.map((n) => `value ->> '${n}' AS ${n}`).join(', ')} FROM json_each(?))`;
}

/** Counts and bigints come back as strings from pg. */
export function num(value: unknown): number {
  return value === null || value === undefined ? 0 : Number(value);
}

export function bool(value: unknown): boolean {
  return value === true || value === 1 || value === '1' || value === 't';
}

export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23505' || e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(e?.message ?? '');
}

/** A row refers to one that is gone (e.g. a version deleted while its metrics waited to be written). */
export function isForeignKeyViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === '23503' || e?.code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || /FOREIGN KEY constraint failed/.test(e?.message ?? '');
}

/** A unique violation on an index that covers `column` of `table` (names as the migrations made them). */
export function isUniqueViolationOn(err: unknown, table: string, column: string): boolean {
  if (!isUniqueViolation(err)) return false;
  const e = err as { constraint?: string; message?: string };
  if (typeof e.constraint === 'string') return e.constraint.includes(column);
  return (e.message ?? '').includes(`${table}.${column}`);
}

/**
 * SQLite only: a number that changes whenever another process commits to the database file
 * (`PRAGMA data_version`, per connection; this process's own commits do not change it). Lets a
 * cache notice a separate runner's writes without NOTIFY. Read synchronously from the process's
 * one connection (microseconds), through knex when that is not at hand. null on PostgreSQL.
 */
export async function sqliteDataVersion(db: Db): Promise<number | null> {
  if (db.dialect !== 'sqlite') return null;
  const fast = db.sqliteDataVersion?.();
  if (fast !== undefined && fast !== null) return fast;
  const rows = await db.knex.raw('PRAGMA data_version');
  return Number(rows[0]?.data_version);
}
