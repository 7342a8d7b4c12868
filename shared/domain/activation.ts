// Which deployment is live: the one rule, used by rollback (API) and by the runner after a build.
//
// Every activation carries the intent behind it, on the function's logical clock (intent_seq):
// a deploy request takes a tick when it is made, a rollback takes one when it is made. A finished
// build goes live only if its deploy request is newer than the intent behind the live version, so
// v3 still takes over when v2's build finishes after it, and a build requested before a rollback
// never overrides that rollback. A rollback is always the newest intent.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { recordEvent } from './events.ts';
import { announceFunctionChanged } from './function-changes.ts';
import { BUILT_STATUS, type DeploymentRow, type FunctionRow } from './model.ts';

export type ActivationReason =
  /** a build finished; its deploy request's intent decides */
  | { kind: 'build' }
  /** a user asked for this version now */
  | { kind: 'rollback' };

export type ActivationResult =
  | { activated: true; previousDeploymentId: string | null }
  | { activated: false; reason: 'already_active' | 'superseded' };

/**
 * Makes `deploymentId` the function's live deployment, inside `trx`. The old row is switched off
 * before the new one on, so the one-active partial unique index holds at every statement.
 */
export async function activateDeploymentInTransaction(
  db: Db,
  trx: Knex.Transaction,
  input: { functionId: string; deploymentId: string; reason: ActivationReason },
): Promise<ActivationResult> {
  if (!(await lockFunctionRow(db, trx, input.functionId))) throw errors.functionNotFound();
  const fn = (await trx('functions').where({ id: input.functionId }).first()) as FunctionRow;
  const dep = (await trx('function_deployments')
    .where({ id: input.deploymentId, function_id: input.functionId })
    .first()) as DeploymentRow | undefined;
  if (!dep) throw errors.notFound('deployment');
  if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(num(dep.version), dep.status);
  if (bool(dep.is_active)) {
    // Still an intent: "keep v1" while v2 builds means v2 must not take over when it finishes.
    if (input.reason.kind === 'rollback') {
      const intent = num(fn.intent_seq) + 1;
      await trx('functions')
        .where({ id: fn.id })
        .update({ intent_seq: intent, active_intent_seq: intent, updated_at: nowIso() });
    }
    return { activated: false, reason: 'already_active' };
  }

  let intent: number;
  if (input.reason.kind === 'rollback') {
    intent = num(fn.intent_seq) + 1;
  } else {
    intent = num(dep.intent_seq);
    if (intent <= num(fn.active_intent_seq)) {
      await recordEvent(trx, {
        functionId: fn.id,
        deploymentId: dep.id,
        version: num(dep.version),
        event: 'activation_skipped',
        message: `version ${dep.version} built but not activated: a newer deploy or rollback is live`,
      });
      return { activated: false, reason: 'superseded' };
    }
  }

  const now = nowIso();
  await trx('function_deployments')
    .where({ function_id: fn.id })
    .andWhere('is_active', true)
    .update({ is_active: false, updated_at: now });
  await trx('function_deployments')
    .where({ id: dep.id })
    .update({ is_active: true, activated_at: now, updated_at: now });
  await trx('functions')
    .where({ id: fn.id })
    .update({
      active_deployment_id: dep.id,
      active_intent_seq: intent,
      intent_seq: Math.max(intent, num(fn.intent_seq)),
      status: 'active',
      updated_at: now,
    });
  await announceFunctionChanged(db, trx, fn.id);
  await recordEvent(trx, {
    functionId: fn.id,
    deploymentId: dep.id,
    version: num(dep.version),
    event: input.reason.kind === 'rollback' ? 'rolled_back' : 'activated',
    message:
      input.reason.kind === 'rollback'
        ? `rolled back to version ${dep.version}`
        : `version ${dep.version} is now live`,
  });
  return { activated: true, previousDeploymentId: fn.active_deployment_id ?? null };
}

export function activateDeployment(
  db: Db,
  input: { functionId: string; deploymentId: string; reason: ActivationReason },
): Promise<ActivationResult> {
  return withTransaction(db, (trx) => activateDeploymentInTransaction(db, trx, input));
}
