// Every SQLite-vs-PostgreSQL difference the domain needs, in one place.
import type { Knex } from 'knex';
import type { Db } from './knex.ts';

export function withTransaction<T>(db: Db, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return db.knex.transaction(fn);
}

/**
 * Serialize writers of one function for the rest of the transaction; returns false when the
 * function does not exist. PostgreSQL: a row lock. SQLite: a no-op write, which takes the database
 * write lock at once: a transaction that read first and wrote later could be refused with
 * SQLITE_BUSY when another process wrote in between, whatever busy_timeout says.
 */
export async function lockFunctionRow(db: Db, trx: Knex.Transaction, functionId: string): Promise<boolean> {
  if (db.dialect === 'pg') {
    const rows = await trx('functions').select('id').where({ id: functionId }).forUpdate();
    return rows.length > 0;
  }
  const n = await trx('functions').where({ id: functionId }).update({ id: functionId });
  return n > 0;
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

/**
 * SQLite only: a number that changes whenever another process commits to the database file
 * (`PRAGMA data_version`, per connection; this process's own commits do not change it). Lets a
 * cache notice a separate runner's writes without NOTIFY. null on PostgreSQL.
 */
export async function sqliteDataVersion(db: Db): Promise<number | null> {
  if (db.dialect !== 'sqlite') return null;
  const rows = await db.knex.raw('PRAGMA data_version');
  return Number(rows[0]?.data_version);
}
