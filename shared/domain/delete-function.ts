// Deleting a function removes its history rows and every artifact they point at.
import type { Platform } from '../platform.ts';
import { lockFunctionRow, lockVersionRows, num, withTransaction } from '../db/dialect.ts';
import { errors } from '../errors.ts';
import { announceFunctionChanged } from './function-changes.ts';
import type { DeploymentRow } from './model.ts';

export interface RemovedFunction {
  functionId: string;
  deployments: Pick<DeploymentRow, 'id' | 'version' | 's3_key' | 'archive_key' | 'image_tag' | 'runtime_driver'>[];
}

/**
 * Rows go first, in one transaction under the function's lock (no version can be allocated in
 * between), its versions' rows locked before the function's row is deleted (lockVersionRows: the
 * lock order every writer of a version keeps, docs/design.md); then the objects. If S3 fails
 * half-way, what is left is an unreferenced object, never a history row pointing at an artifact
 * that is gone.
 */
export async function deleteFunction(
  p: Platform,
  userId: string,
  functionId: string,
  opts: { removeRuntimeArtifacts?: (removed: RemovedFunction) => Promise<void> } = {},
): Promise<RemovedFunction> {
  const removed = await withTransaction(p.db, async (trx) => {
    const exists = await lockFunctionRow(p.db, trx, functionId);
    const owned = exists && (await trx('functions').where({ id: functionId, user_id: userId }).first('id'));
    if (!owned) throw errors.functionNotFound();
    const deployments = (await lockVersionRows(
      p.db,
      trx('function_deployments').select('id', 'version', 's3_key', 'archive_key', 'image_tag', 'runtime_driver').where({ function_id: functionId }),
    )) as RemovedFunction['deployments'];
    await trx('functions').where({ id: functionId }).delete();
    await announceFunctionChanged(p.db, trx, functionId);
    return { functionId, deployments: deployments.map((d) => ({ ...d, version: num(d.version) })) };
  });
  const keys = new Set<string>();
  for (const d of removed.deployments) {
    keys.add(d.s3_key);
    if (d.archive_key) keys.add(d.archive_key);
  }
  const results = await Promise.allSettled([...keys].map((k) => p.storage.delete(k)));
  const failed = results.filter((r) => r.status === 'rejected');
  if (failed.length > 0) {
    p.logger.error('some archives of a deleted function could not be removed', {
      functionId,
      failed: failed.length,
      reason: (failed[0] as PromiseRejectedResult).reason,
    });
  }
  if (opts.removeRuntimeArtifacts) {
    try {
      await opts.removeRuntimeArtifacts(removed);
    } catch (err) {
      p.logger.error('runtime artifacts of a deleted function could not be removed', { functionId, err });
    }
  }
  return removed;
}
