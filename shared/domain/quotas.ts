// Per-account quotas: functions, builds queued or running, archive bytes stored (checked here, in
// the transaction that allocates, under the account's lock so that concurrent deploys cannot both
// take the last slot) and warm instances (counted by the serving process, see invoke.ts).
import type { Knex } from 'knex';
import { DatabaseError } from 'pg';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import { lockUserRow, num } from '../db/dialect.ts';
import { QuotaError } from '../errors.ts';

export type Quotas = Config['quotas'];

/** How long a refused build or instance should wait before trying again. */
const BUSY_RETRY_SECONDS = 10;

/** Takes the account's lock when any quota the caller checks is on. Call before any function lock. */
export async function lockAccount(db: Db, trx: Knex.Transaction, quotas: Quotas, userId: string): Promise<void> {
  if (needsAccountLock(quotas)) await lockUserRow(db, trx, userId);
}

/**
 * lockAccount as a statement for a transaction run outside knex (pg-direct.ts, PostgreSQL): the
 * account's row FOR NO KEY UPDATE, as lockUserRow takes it; null when no quota is on. Prepared:
 * parsed and planned once per connection, as the rollback's function lock is.
 */
export function accountLockStatement(quotas: Quotas, userId: string): { sql: string; bindings: string[]; prepare: true } | null {
  return needsAccountLock(quotas) ? { sql: 'SELECT id FROM users WHERE id = ? FOR NO KEY UPDATE', bindings: [userId], prepare: true } : null;
}

/** Whether an account's quotas are checked under its lock (none is when every quota is off). */
function needsAccountLock(quotas: Quotas): boolean {
  return Boolean(quotas.maxFunctions ?? quotas.maxBuilds ?? quotas.maxArchiveBytes);
}

export async function checkNewFunction(trx: Knex.Transaction, quotas: Quotas, userId: string): Promise<void> {
  if (quotas.maxFunctions === null) return;
  const row = await trx('functions').where({ user_id: userId }).count({ n: '*' }).first();
  refuseNewFunction(quotas, num(row?.n));
}

function refuseNewFunction(quotas: Quotas, functions: number): void {
  const max = quotas.maxFunctions;
  if (max !== null && functions >= max) {
    throw new QuotaError('MAX_FUNCTIONS_PER_USER', max, `this account has ${functions} functions, the limit (MAX_FUNCTIONS_PER_USER) is ${max}: delete one first`);
  }
}

function refuseBuild(quotas: Quotas, builds: number): void {
  const max = quotas.maxBuilds;
  if (max !== null && builds >= max) {
    throw new QuotaError(
      'MAX_BUILDS_PER_USER',
      max,
      `this account has ${builds} builds queued or running, the limit (MAX_BUILDS_PER_USER) is ${max}: retry when one finishes`,
      BUSY_RETRY_SECONDS,
    );
  }
}

function refuseArchiveBytes(quotas: Quotas, used: number, adding: number): void {
  const max = quotas.maxArchiveBytes;
  if (max === null) return;
  if (used + adding > max || (adding === 0 && used >= max)) {
    throw new QuotaError(
      'MAX_ARCHIVE_BYTES_PER_USER',
      max,
      `this account stores ${used} bytes of archives${adding ? ` and this one is ${adding}` : ''}, the limit (MAX_ARCHIVE_BYTES_PER_USER) is ${max} bytes: delete functions or let cleanup remove old versions`,
    );
  }
}

/** What a deploy (or a complete) asks of the account's quotas. */
export interface QuotaAsk {
  /** a new function of this name, unless the account already has one */
  newFunctionName?: string;
  /** archive bytes to add (0: only that the account is not already over) */
  adding: number;
  /** check the bytes before the build slot (complete) */
  bytesFirst?: boolean;
}

/**
 * The counts the quotas are checked against, as one SELECT instead of one per quota: the account's
 * lock is held meanwhile, and every statement under it holds up that account's other deploys. `?`
 * placeholders, the same SQL on both databases; null when no quota the ask touches is on.
 *
 * Builds and bytes come from the account's usage rows (function_usage, one per function, kept by
 * the database's triggers: migrations …_function_usage), read through their index by account: a
 * read costs what the account has functions, whatever their versions. Counting the versions
 * themselves, even through partial indexes that held exactly the rows counted, cost what the
 * account had stored and queued: on SQLite 70–81 µs a read with 550 of each (the bench's
 * 16-client level) and 166 µs with 1,500, against 12 µs now; on PostgreSQL, 1.3 ms at 1,500, and
 * a generic plan made while the tables were small once scanned them for every row (the bench's
 * "slow mode": docs/benchmarks.md, issue 15's fifteenth and sixteenth passes).
 */
export function accountQuotaRead(quotas: Quotas, userId: string, ask: QuotaAsk): { sql: string; bindings: string[] } | null {
  const parts: string[] = [];
  const bindings: string[] = [];
  if (ask.newFunctionName !== undefined && quotas.maxFunctions !== null) {
    parts.push('(SELECT count(*) FROM functions WHERE user_id = ?) AS functions', '(SELECT count(*) FROM functions WHERE user_id = ? AND name = ?) AS named');
    bindings.push(userId, userId, ask.newFunctionName);
  }
  const usage = (column: string) => `(SELECT COALESCE(sum(u.${column}), 0) FROM function_usage u WHERE u.user_id = ?)`;
  if (quotas.maxBuilds !== null) {
    parts.push(`${usage('builds')} AS builds`);
    bindings.push(userId);
  }
  if (quotas.maxArchiveBytes !== null) {
    parts.push(`${usage('archive_bytes')} AS bytes`);
    bindings.push(userId);
  }
  return parts.length === 0 ? null : { sql: `SELECT ${parts.join(', ')}`, bindings };
}

/**
 * Throws the QuotaError the counts read by accountQuotaRead call for, in the order the separate
 * checks run: a new function (when the account has no function of that name), a build slot, room
 * for the bytes (`bytesFirst`: the bytes before the build slot).
 */
export function refuseOverQuota(quotas: Quotas, counts: Record<string, unknown>, ask: QuotaAsk): void {
  if (ask.newFunctionName !== undefined && quotas.maxFunctions !== null && num(counts.named) === 0) refuseNewFunction(quotas, num(counts.functions));
  if (ask.bytesFirst) refuseArchiveBytes(quotas, num(counts.bytes), ask.adding);
  refuseBuild(quotas, num(counts.builds));
  if (!ask.bytesFirst) refuseArchiveBytes(quotas, num(counts.bytes), ask.adding);
}

/**
 * For writes committed without reading first (a group of deploys of existing functions in
 * versions.ts, a complete in uploads.ts): a statement that fails (division by zero, nothing
 * written; isGuardRefusal) whenever refuseOverQuota would refuse any of them, asked of the counts
 * accountQuotaRead reads — the same rule, here beside it. Each asks for `adding` bytes (a deploy's
 * declared size, or 0; a complete's archive). What it fails reads the counts and applies
 * refuseOverQuota, which then refuses with the right error. PostgreSQL; null when no quota the
 * asks touch is on.
 */
export function accountQuotaGuard(quotas: Quotas, userId: string, addings: readonly number[]): { sql: string; bindings: (string | number)[] } | null {
  const read = accountQuotaRead(quotas, userId, { adding: 0 });
  if (!read) return null;
  const allowed: string[] = [];
  const bindings: (string | number)[] = [];
  if (quotas.maxBuilds !== null) {
    // refuseBuild: builds >= max
    allowed.push('q.builds < ?');
    bindings.push(quotas.maxBuilds);
  }
  if (quotas.maxArchiveBytes !== null) {
    // refuseArchiveBytes: used + adding > max, or used >= max for an ask of 0 bytes
    allowed.push('COALESCE(q.bytes, 0) + ? <= ?');
    bindings.push(Math.max(0, ...addings), quotas.maxArchiveBytes);
    if (addings.some((a) => a === 0)) {
      allowed.push('COALESCE(q.bytes, 0) < ?');
      bindings.push(quotas.maxArchiveBytes);
    }
  }
  // the conditions' placeholders come first in the text, the read's after
  return { sql: `SELECT 1 / (${allowed.join(' AND ')})::int FROM (${read.sql}) q`, bindings: [...bindings, ...read.bindings] };
}

/** Whether a statement failed as accountQuotaGuard fails when a quota would refuse (division by zero). */
export function isGuardRefusal(err: unknown): boolean {
  return err instanceof DatabaseError && err.code === DIVISION_BY_ZERO;
}

const DIVISION_BY_ZERO = '22012';

/** The quotas a deploy (or a complete) is checked against, read in one statement under the account's lock. */
export async function checkAccountQuotas(trx: Knex.Transaction, quotas: Quotas, userId: string, ask: QuotaAsk): Promise<void> {
  const read = accountQuotaRead(quotas, userId, ask);
  if (!read) return;
  const result = await trx.raw(read.sql, read.bindings);
  refuseOverQuota(quotas, (Array.isArray(result) ? result[0] : result.rows[0]) as Record<string, unknown>, ask);
}

/** The instance quota as the serving process applies it; null when it is off. */
export function instanceQuotaError(quotas: Quotas, running: number): QuotaError | null {
  const max = quotas.maxInstances;
  if (max === null || running < max) return null;
  return new QuotaError(
    'MAX_INSTANCES_PER_USER',
    max,
    `this account has ${running} instances running in this process, the limit (MAX_INSTANCES_PER_USER) is ${max}: retry when one goes idle and stops`,
    BUSY_RETRY_SECONDS,
  );
}
