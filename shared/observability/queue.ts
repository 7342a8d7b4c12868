// The build queue as an operator sees it: how many builds wait for a runner, and since when.
import type { Db } from '../db/knex.ts';
import { num } from '../db/dialect.ts';
import { toIso } from '../db/time.ts';

export interface QueueSnapshot {
  /** builds in `building` that no runner holds: queued, or waiting out a retry's backoff */
  depth: number;
  /** when the oldest of them was queued (ISO); null when none waits */
  oldestQueuedAt: string | null;
}

export async function queueSnapshot(db: Db): Promise<QueueSnapshot> {
  const row = await db
    .knex('function_deployments')
    .where({ status: 'building' })
    .whereNull('claimed_by')
    .first(db.knex.raw('COUNT(*) AS depth'), db.knex.raw('MIN(queued_at) AS oldest'));
  return { depth: num(row?.depth ?? 0), oldestQueuedAt: toIso(row?.oldest ?? null) };
}
