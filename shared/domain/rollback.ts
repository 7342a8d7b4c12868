// Rollback: make an earlier built version live again, without a rebuild — or, for a version whose
// image retention cleanup removed, restore it: rebuild from its archive and go live when built,
// unless the user activates something else meanwhile.
import type { Db } from '../db/knex.ts';
import { lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { activateDeploymentInTransaction, recordApprovalInTransaction } from './activation.ts';
import { endCanaryInTransaction } from './canary-state.ts';
import { clearCandidateInTransaction } from './traffic.ts';
import { requeueBuild } from './build-queue.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { recordEvent } from './events.ts';
import { BUILT_STATUS } from './model.ts';
import { metricsOf } from '../observability/metrics.ts';

export interface RollbackResult {
  version: number;
  deploymentId: string;
  /** false when the version was already live (a no-op) */
  changed: boolean;
  /** true when the version is being rebuilt from its archive first (answered with 202) */
  restoring: boolean;
}

export interface RollbackOptions {
  /** who asked (the event log names them; it approves a version that waited for approval) */
  actor?: string | null;
  /** 'approve': the same move, asked for as the approval of a version that waited for it */
  kind?: 'rollback' | 'approve';
}

/**
 * A rollback sends all the traffic to the version: a running canary ends (aborted) and a candidate
 * stops taking traffic, in the same transaction as the switch, so nothing but the version asked
 * for serves once it answers.
 */
export async function rollbackToVersion(db: Db, functionId: string, version: number, opts: RollbackOptions = {}): Promise<RollbackResult> {
  const kind = opts.kind ?? 'rollback';
  const actor = opts.actor ?? null;
  const result = await withTransaction(db, async (trx): Promise<RollbackResult> => {
    // Lock before reading: the decision below must still hold when it is written.
    if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
    const dep = await findDeploymentByVersion(trx, functionId, version);
    if (!dep) throw errors.versionNotFound(version);
    const base = { version: num(dep.version), deploymentId: dep.id };
    const why = `${kind} to version ${version}${actor ? ` by ${actor}` : ''}`;
    const takeAllTraffic = async () => {
      await endCanaryInTransaction(trx, { functionId, status: 'aborted', reason: why });
      await clearCandidateInTransaction(db, trx, { functionId, why });
    };
    if (dep.status === 'archived') {
      await takeAllTraffic();
      // the user asked for it: a version that waited for approval has it now
      await recordApprovalInTransaction(trx, dep, { actor, how: kind });
      // The rollback is the newest intent: the rebuilt version goes live unless a later one wins.
      const fn = await trx('functions').where({ id: functionId }).first('intent_seq');
      const intent = num(fn.intent_seq) + 1;
      await trx('functions').where({ id: functionId }).update({ intent_seq: intent, updated_at: nowIso() });
      await requeueBuild(db, trx, dep.id, { from: 'archived', intentSeq: intent });
      await recordEvent(trx, {
        functionId,
        deploymentId: dep.id,
        version: base.version,
        event: 'restore_requested',
        message: `rollback to archived version ${version}: rebuilding it from its archive`,
      });
      return { ...base, changed: true, restoring: true };
    }
    if (dep.status === 'deleted') throw errors.archiveGone(version);
    if (dep.status === 'archiving') {
      throw errors.conflict(`version ${version} is being archived right now; retry in a moment`, { version, status: dep.status });
    }
    if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(version, dep.status);
    await takeAllTraffic();
    const result = await activateDeploymentInTransaction(db, trx, {
      functionId,
      deploymentId: dep.id,
      reason: { kind, actor },
    });
    return { ...base, changed: result.activated, restoring: false };
  });
  metricsOf(db)?.rollbacks.inc({ kind, outcome: result.restoring ? 'restoring' : result.changed ? 'switched' : 'already_live' });
  return result;
}
