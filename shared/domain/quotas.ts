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
  const max = quotas.maxFunctions;
  if (max === null) return;
  const row = await trx('functions').where({ user_id: userId }).count({ n: '*' }).first();
  if (num(row?.n) >= max) {
    throw new QuotaError('MAX_FUNCTIONS_PER_USER', max, `this account has ${num(row?.n)} functions, the limit (MAX_FUNCTIONS_PER_USER) is ${max}: delete one first`);
  }
}

/** Room for one more build queued or running. */
export async function checkBuildSlot(trx: Knex.Transaction, quotas: Quotas, userId: string): Promise<void> {
  const max = quotas.maxBuilds;
  if (max === null) return;
  const row = await trx('function_deployments as d')
    .join('functions as f', 'f.id', 'd.function_id')
    .where({ 'f.user_id': userId, 'd.status': 'building' })
    .count({ n: '*' })
    .first();
  if (num(row?.n) >= max) {
    throw new QuotaError(
      'MAX_BUILDS_PER_USER',
      max,
      `this account has ${num(row?.n)} builds queued or running, the limit (MAX_BUILDS_PER_USER) is ${max}: retry when one finishes`,
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
  const max = quotas.maxArchiveBytes;
  if (max === null) return;
  const used = await storedArchiveBytes(trx, userId);
  if (used + adding > max || (adding === 0 && used >= max)) {
    throw new QuotaError(
      'MAX_ARCHIVE_BYTES_PER_USER',
      max,
      `this account stores ${used} bytes of archives${adding ? ` and this one is ${adding}` : ''}, the limit (MAX_ARCHIVE_BYTES_PER_USER) is ${max} bytes: delete functions or let cleanup remove old versions`,
    );
  }
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
