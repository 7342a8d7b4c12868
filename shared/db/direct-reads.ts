// Hot reads that knex would make a promise round trip (and a query build) each: prepared
// statements in one read snapshot on SQLite (sqlite-direct.ts), one message and one round trip on
// PostgreSQL (pg-direct.ts). The same SQL on both, with `?` placeholders.
import type { Db } from './knex.ts';
import { pgReads } from './pg-direct.ts';
import { sqliteRead } from './sqlite-direct.ts';

export interface Read {
  sql: string;
  bindings: readonly unknown[];
}

/** Each statement's rows, in order. */
export async function readDirect(db: Db, reads: readonly Read[]): Promise<unknown[][]> {
  if (db.dialect === 'sqlite') return sqliteRead(db, (r) => reads.map((read) => r.all(read.sql, ...read.bindings)));
  return pgReads(db, reads.map((read) => read.sql).join(';\n'), reads.flatMap((read) => read.bindings));
}
