// The build queue is the function_deployments table itself: a row in `building` is work for a
// runner. Entering the queue also wakes PostgreSQL runners at once (LISTEN/NOTIFY); polling stays
// the fallback, and the only path on SQLite.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { nowIso } from '../db/time.ts';

export const BUILD_QUEUED_CHANNEL = 'containerpub_build_queued';

/** pending_upload → building, once; false when another request already moved it. */
export async function enqueueBuild(
  db: Db,
  trx: Knex.Transaction,
  deploymentId: string,
  archive: { size: number; sha256: string },
): Promise<boolean> {
  const now = nowIso();
  const moved = await trx('function_deployments')
    .where({ id: deploymentId, status: 'pending_upload' })
    .update({
      status: 'building',
      archive_size: archive.size,
      archive_sha256: archive.sha256,
      queued_at: now,
      updated_at: now,
    });
  // Delivered when the transaction commits, so a woken runner always sees the row.
  if (moved > 0 && db.dialect === 'pg') await trx.raw(`NOTIFY ${BUILD_QUEUED_CHANNEL}`);
  return moved > 0;
}
