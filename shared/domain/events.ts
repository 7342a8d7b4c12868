// The per-function event log (the seed's function_logs): what happened to which deployment, when.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { jsonRowsCte } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';

export type FunctionEvent =
  | 'deploy_requested'
  | 'upload_completed'
  | 'upload_rejected'
  | 'upload_expired'
  | 'build_started'
  | 'build_succeeded'
  | 'build_failed'
  | 'build_retried'
  /** a service the build needs is down (S3, the registry, the engine): it waits, spending no attempt */
  | 'build_waiting'
  | 'activated'
  | 'activation_skipped'
  | 'rolled_back'
  | 'restore_requested'
  | 'rebuild_requested'
  | 'archived'
  | 'archive_deleted'
  | 'image_removed'
  /** a version's instances keep dying (pool.ts CRASH_LOOP_COUNT in CRASH_LOOP_WINDOW_MS) */
  | 'crash_loop'
  // progressive delivery (traffic.ts, tags.ts, canary-state.ts, runner/canary-controller.ts)
  | 'traffic_changed'
  | 'promoted'
  | 'tag_set'
  | 'tag_removed'
  /** built, and not made live: the deploy asked for approval (activate:false or requireApproval) */
  | 'awaiting_approval'
  | 'approved'
  /** built during a canary: it does not take traffic */
  | 'activation_held'
  | 'canary_started'
  | 'canary_advanced'
  | 'canary_waiting'
  | 'canary_promoted'
  | 'canary_rolled_back'
  | 'canary_aborted';

export interface EventInput {
  functionId: string;
  deploymentId?: string | null;
  version?: number | null;
  event: FunctionEvent;
  message: string;
  /** when it happened, if not now: a decision made at one instant (a canary's step) records that instant */
  at?: string;
}

export async function recordEvent(trx: Knex | Knex.Transaction, e: EventInput): Promise<void> {
  await trx('function_logs').insert({
    function_id: e.functionId,
    deployment_id: e.deploymentId ?? null,
    version: e.version ?? null,
    event: e.event,
    message: e.message,
    created_at: e.at ?? nowIso(),
  });
}

/**
 * recordEvent for many events in one INSERT, the rows passed as one JSON parameter (retention
 * cleanup records a batch of up to 1,000 versions at once; knex's multi-row insert costs more to
 * build than to run, and SQLite caps it at 500 rows).
 */
export async function recordEvents(db: Db, trx: Knex | Knex.Transaction, events: readonly EventInput[]): Promise<void> {
  if (events.length === 0) return;
  const now = nowIso();
  const rows = events.map((e) => ({
    function_id: e.functionId,
    deployment_id: e.deploymentId ?? null,
    version: e.version ?? null,
    event: e.event,
    message: e.message,
    created_at: e.at ?? now,
  }));
  const cte = jsonRowsCte(db, 'e', {
    function_id: 'uuid',
    deployment_id: 'uuid',
    version: 'integer',
    event: 'text',
    message: 'text',
    created_at: 'timestamptz',
  });
  await trx.raw(
    `WITH ${cte}
     INSERT INTO function_logs (function_id, deployment_id, version, event, message, created_at)
     SELECT function_id, deployment_id, version, event, message, created_at FROM e`,
    [JSON.stringify(rows)],
  );
}

export interface EventView {
  id: number;
  deploymentId: string | null;
  version: number | null;
  event: string;
  message: string;
  createdAt: string | null;
}

export async function listEvents(
  db: Db,
  functionId: string,
  opts: { limit: number; version?: number },
): Promise<EventView[]> {
  const q = db.knex('function_logs').where({ function_id: functionId });
  if (opts.version !== undefined) q.andWhere({ version: opts.version });
  const rows = await q.orderBy('id', 'desc').limit(opts.limit);
  return rows.map((r) => ({
    id: Number(r.id),
    deploymentId: r.deployment_id ?? null,
    version: r.version === null ? null : Number(r.version),
    event: r.event,
    message: r.message,
    createdAt: toIso(r.created_at),
  }));
}
