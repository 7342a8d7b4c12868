// The one running canary of a function, as the rest of the control plane sees it: whether there is
// one (a deploy during a canary is built but held; traffic changes by hand are refused), and ending
// it when a user takes over (rollback, promote, abort). The controller that walks a canary through
// its steps is runner/canary-controller.ts; starting one and its view are in canary.ts.
import type { Knex } from 'knex';
import { num } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { recordEvent } from './events.ts';

export type CanaryStatus = 'running' | 'promoted' | 'rolled_back' | 'aborted';

export interface CanaryRow {
  id: string;
  function_id: string;
  deployment_id: string;
  version: number;
  status: CanaryStatus;
  steps: string;
  step_index: number;
  interval_seconds: number;
  max_error_rate: number;
  max_p99_ms: number | null;
  min_requests: number;
  step_started_at: unknown;
  window_baseline: string | null;
  last_window: string | null;
  reason: string | null;
  started_by: string | null;
  created_at: unknown;
  updated_at: unknown;
  finished_at: unknown;
}

export async function runningCanary(trx: Knex | Knex.Transaction, functionId: string): Promise<CanaryRow | null> {
  const row = await trx('function_canaries').where({ function_id: functionId, status: 'running' }).first();
  return (row as CanaryRow | undefined) ?? null;
}

/**
 * Ends the function's running canary, if any, inside `trx` (the caller holds the function's lock).
 * Traffic is the caller's business: an abort or a rollback clears the candidate, a promotion makes
 * it live. Returns the canary it ended.
 */
export async function endCanaryInTransaction(
  trx: Knex.Transaction,
  input: { functionId: string; status: Exclude<CanaryStatus, 'running'>; reason: string; at?: string },
): Promise<CanaryRow | null> {
  const canary = await runningCanary(trx, input.functionId);
  if (!canary) return null;
  const now = input.at ?? nowIso();
  await trx('function_canaries')
    .where({ id: canary.id, status: 'running' })
    .update({ status: input.status, reason: input.reason, finished_at: now, updated_at: now });
  await recordEvent(trx, {
    functionId: input.functionId,
    deploymentId: canary.deployment_id,
    version: num(canary.version),
    event: input.status === 'promoted' ? 'canary_promoted' : input.status === 'rolled_back' ? 'canary_rolled_back' : 'canary_aborted',
    message: `canary of version ${canary.version} ${input.status.replace('_', ' ')}: ${input.reason}`,
    at: now,
  });
  return { ...canary, status: input.status, reason: input.reason };
}
