// Rollback: make an earlier built version live again, without a rebuild.
import type { Db } from '../db/knex.ts';
import { lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { errors } from '../errors.ts';
import { activateDeploymentInTransaction } from './activation.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { BUILT_STATUS } from './model.ts';

export interface RollbackResult {
  version: number;
  deploymentId: string;
  /** false when the version was already live (a no-op) */
  changed: boolean;
}

export async function rollbackToVersion(db: Db, functionId: string, version: number): Promise<RollbackResult> {
  return withTransaction(db, async (trx) => {
    // Lock before reading: the decision below must still hold when it is written.
    if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
    const dep = await findDeploymentByVersion(trx, functionId, version);
    if (!dep) throw errors.versionNotFound(version);
    if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(version, dep.status);
    const result = await activateDeploymentInTransaction(db, trx, {
      functionId,
      deploymentId: dep.id,
      reason: { kind: 'rollback' },
    });
    return { version: num(dep.version), deploymentId: dep.id, changed: result.activated };
  });
}
