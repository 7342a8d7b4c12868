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

/** Serializes what one account allocates (quotas): taken before any function row lock. */
export function lockUserRow(db: Db, trx: Knex.Transaction, userId: string): Promise<boolean> {
  return lockRow(db, trx, 'users', userId);
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
