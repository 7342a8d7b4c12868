// Per-account quotas: functions, builds queued or running, archive bytes stored (checked here, in
// the transaction that allocates, under the account's lock so that concurrent deploys cannot both
// take the last slot) and warm instances (counted by the serving process, see invoke.ts).
import type { Knex } from 'knex';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import { lockUserRow, num } from '../db/dialect.ts';
import { QuotaError } from '../errors.ts';

export type Quotas = Config['quotas'];

/** How long a refused build or instance should wait before trying again. */
const BUSY_RETRY_SECONDS = 10;

/** Takes the account's lock when any quota the caller checks is on. Call before any function lock. */
export async function lockAccount(db: Db, trx: Knex.Transaction, quotas: Quotas, userId: string): Promise<void> {
  if (quotas.maxFunctions ?? quotas.maxBuilds ?? quotas.maxArchiveBytes) await lockUserRow(db, trx, userId);
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

/** Room for one more build queued or running. */
export async function checkBuildSlot(trx: Knex.Transaction, quotas: Quotas, userId: string): Promise<void> {
  if (quotas.maxBuilds === null) return;
  const row = await trx('function_deployments as d')
    .join('functions as f', 'f.id', 'd.function_id')
    .where({ 'f.user_id': userId, 'd.status': 'building' })
    .count({ n: '*' })
    .first();
  refuseBuild(quotas, num(row?.n));
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

/** Bytes of archives this account stores: versions whose archive has not been deleted. */
export async function storedArchiveBytes(trx: Knex.Transaction | Knex, userId: string): Promise<number> {
  const row = await trx('function_deployments as d')
    .join('functions as f', 'f.id', 'd.function_id')
    .where('f.user_id', userId)
    .whereNull('d.archive_removed_at')
    .sum({ n: 'd.archive_size' })
    .first();
  return num(row?.n);
}

/** Room for `adding` more archive bytes (0: only that the account is not already over). */
export async function checkArchiveBytes(trx: Knex.Transaction, quotas: Quotas, userId: string, adding: number): Promise<void> {
  if (quotas.maxArchiveBytes === null) return;
  refuseArchiveBytes(quotas, await storedArchiveBytes(trx, userId), adding);
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

/**
 * The quotas a deploy (or a complete) is checked against, read in one statement (each count by
 * its own index) instead of one per quota: the account's lock is held meanwhile, and every
 * statement under it holds up that account's other deploys. In the order the separate checks
 * run: a new function (when `newFunctionName` is given and the account has no function of that
 * name), a build slot, room for `adding` bytes; `bytesFirst` puts the bytes first (complete).
 */
export async function checkAccountQuotas(
  trx: Knex.Transaction,
  quotas: Quotas,
  userId: string,
  opts: { newFunctionName?: string; adding: number; bytesFirst?: boolean },
): Promise<void> {
  const parts: string[] = [];
  const bindings: string[] = [];
  const checkName = opts.newFunctionName !== undefined && quotas.maxFunctions !== null;
  if (checkName) {
    parts.push('(SELECT count(*) FROM functions WHERE user_id = ?) AS functions', '(SELECT count(*) FROM functions WHERE user_id = ? AND name = ?) AS named');
    bindings.push(userId, userId, opts.newFunctionName!);
  }
  if (quotas.maxBuilds !== null) {
    parts.push(
      "(SELECT count(*) FROM function_deployments d JOIN functions f ON f.id = d.function_id WHERE f.user_id = ? AND d.status = 'building') AS builds",
    );
    bindings.push(userId);
  }
  if (quotas.maxArchiveBytes !== null) {
    parts.push(
      '(SELECT sum(d.archive_size) FROM function_deployments d JOIN functions f ON f.id = d.function_id WHERE f.user_id = ? AND d.archive_removed_at IS NULL) AS bytes',
    );
    bindings.push(userId);
  }
  if (parts.length === 0) return;
  const result = await trx.raw(`SELECT ${parts.join(', ')}`, bindings);
  const row = (Array.isArray(result) ? result[0] : result.rows[0]) as Record<string, unknown>;
  if (checkName && num(row.named) === 0) refuseNewFunction(quotas, num(row.functions));
  if (opts.bytesFirst) refuseArchiveBytes(quotas, num(row.bytes), opts.adding);
  refuseBuild(quotas, num(row.builds));
  if (!opts.bytesFirst) refuseArchiveBytes(quotas, num(row.bytes), opts.adding);
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
