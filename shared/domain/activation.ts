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
import { runningCanary } from './canary-state.ts';
import { BUILT_STATUS, type DeploymentRow, type FunctionRow } from './model.ts';
import { metricsOf } from '../observability/metrics.ts';

export type ActivationReason =
  /** a build finished; its deploy request's intent decides */
  | { kind: 'build' }
  /** a user asked for this version now (rollback, approve), or promoted the candidate (by hand or by a canary) */
  | { kind: 'rollback' | 'approve' | 'promote'; actor: string | null };

export type ActivationResult =
  | { activated: true; previousDeploymentId: string | null }
  | { activated: false; reason: 'already_active' | 'superseded' | 'awaiting_approval' | 'held_by_canary' };

/** A version deployed with activate:false (or under requireApproval) that no one has approved yet. */
export function awaitsApproval(dep: Pick<DeploymentRow, 'auto_activate' | 'approved_at'>): boolean {
  return !bool(dep.auto_activate) && !dep.approved_at;
}

/**
 * Records that `actor` approved a version that waited for approval, the first time a user makes it
 * live or a candidate (a rollback, an approve, a traffic split or a canary). No-op otherwise.
 */
export async function recordApprovalInTransaction(
  trx: Knex.Transaction,
  dep: DeploymentRow,
  input: { actor: string | null; how: string },
): Promise<void> {
  if (!awaitsApproval(dep)) return;
  const now = nowIso();
  await trx('function_deployments').where({ id: dep.id }).update({ approved_by: input.actor ?? 'unknown', approved_at: now, updated_at: now });
  await recordEvent(trx, {
    functionId: dep.function_id,
    deploymentId: dep.id,
    version: num(dep.version),
    event: 'approved',
    message: `version ${dep.version} approved by ${input.actor ?? 'unknown'} (${input.how})`,
  });
}

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
  if (input.reason.kind === 'build') {
    // A build decides nothing when the owner asked to decide: approval, or a canary under way.
    if (awaitsApproval(dep)) {
      await recordEvent(trx, {
        functionId: fn.id,
        deploymentId: dep.id,
        version: num(dep.version),
        event: 'awaiting_approval',
        message: `version ${dep.version} built; it waits for approval (approve, rollback, promote or a canary makes it live)`,
      });
      return { activated: false, reason: 'awaiting_approval' };
    }
    const canary = await runningCanary(trx, fn.id);
    if (canary && !bool(dep.is_active)) {
      await recordEvent(trx, {
        functionId: fn.id,
        deploymentId: dep.id,
        version: num(dep.version),
        event: 'activation_held',
        message: `version ${dep.version} built but takes no traffic: a canary of version ${canary.version} is running`,
      });
      return { activated: false, reason: 'held_by_canary' };
    }
  } else {
    await recordApprovalInTransaction(trx, dep, { actor: input.reason.actor, how: input.reason.kind });
  }
  if (bool(dep.is_active)) {
    // Still an intent: "keep v1" while v2 builds means v2 must not take over when it finishes.
    if (input.reason.kind !== 'build') {
      const intent = num(fn.intent_seq) + 1;
      await trx('functions')
        .where({ id: fn.id })
        .update({ intent_seq: intent, active_intent_seq: intent, updated_at: nowIso() });
    }
    return { activated: false, reason: 'already_active' };
  }

  let intent: number;
  if (input.reason.kind !== 'build') {
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
  trx.executionPromise.then(() => metricsOf(db)?.activations.inc({ reason: input.reason.kind }), () => {});
  const by = input.reason.kind !== 'build' && input.reason.actor ? ` by ${input.reason.actor}` : '';
  await recordEvent(trx, {
    functionId: fn.id,
    deploymentId: dep.id,
    version: num(dep.version),
    event: input.reason.kind === 'rollback' ? 'rolled_back' : input.reason.kind === 'promote' ? 'promoted' : 'activated',
    message:
      input.reason.kind === 'rollback'
        ? `rolled back to version ${dep.version}${by}`
        : input.reason.kind === 'promote'
          ? `version ${dep.version} promoted${by}: it is now live`
          : `version ${dep.version} is now live${by}`,
  });
  return { activated: true, previousDeploymentId: fn.active_deployment_id ?? null };
}

export function activateDeployment(
  db: Db,
  input: { functionId: string; deploymentId: string; reason: ActivationReason },
): Promise<ActivationResult> {
  return withTransaction(db, (trx) => activateDeploymentInTransaction(db, trx, input));
}
