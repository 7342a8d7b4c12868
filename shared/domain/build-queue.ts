// The build queue is the function_deployments table itself: a row in `building` is work for a
// runner. Entering the queue also wakes PostgreSQL runners at once (LISTEN/NOTIFY); polling stays
// the fallback, and the only path on SQLite.
import { EventEmitter } from 'node:events';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { activateDeploymentInTransaction, type ActivationResult } from './activation.ts';
import { recordEvent } from './events.ts';
import { announceFunctionChanged } from './function-changes.ts';
import { BUILT_STATUS } from './model.ts';
import { parseStoredConfig, type StoredConfig } from './release-config.ts';

export const BUILD_QUEUED_CHANNEL = 'containerpub_build_queued';

// Runners in this same process (`npm start`) are woken directly once the queuing transaction
// commits: with SQLite there is no NOTIFY, and a deploy would otherwise wait for the next poll.
const localQueue = new EventEmitter();
localQueue.setMaxListeners(0);

export function onBuildQueuedLocally(listener: () => void): () => void {
  localQueue.on('queued', listener);
  return () => localQueue.off('queued', listener);
}

export async function announceQueued(db: Db, trx: Knex.Transaction): Promise<void> {
  // Delivered when the transaction commits, so a woken runner always sees the row.
  if (db.dialect === 'pg') await trx.raw(`NOTIFY ${BUILD_QUEUED_CHANNEL}`);
  trx.executionPromise.then(() => localQueue.emit('queued'), () => {});
}

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
  if (moved > 0) await announceQueued(db, trx);
  return moved > 0;
}

/**
 * Puts a version that was built once back in the queue: an archived version being restored by a
 * rollback (`intentSeq` is that rollback's), or one whose image vanished (it keeps its intent, so
 * the rebuild never changes which version is live). Attempts start over.
 */
export async function requeueBuild(
  db: Db,
  trx: Knex.Transaction,
  deploymentId: string,
  opts: { from: 'archived' | 'active'; intentSeq?: number },
): Promise<boolean> {
  const now = nowIso();
  const moved = await trx('function_deployments')
    .where({ id: deploymentId, status: opts.from })
    .update({
      status: 'building',
      attempts: 0,
      claimed_by: null,
      lease_expires_at: null,
      error: null,
      queued_at: now,
      updated_at: now,
      ...(opts.intentSeq === undefined ? {} : { intent_seq: opts.intentSeq }),
      ...(opts.from === 'active' ? { image_removed_at: now } : {}),
    });
  if (moved > 0) {
    await announceQueued(db, trx);
    // the live version may be the one that left `active`: serving processes must see it
    const dep = await trx('function_deployments').where({ id: deploymentId }).first('function_id');
    await announceFunctionChanged(db, trx, dep.function_id);
  }
  return moved > 0;
}

/** The built artifact of a version is gone (removed by hand): rebuild it from its archive. */
export async function requestRebuild(db: Db, input: { functionId: string; deploymentId: string; version: number; why: string }): Promise<void> {
  await withTransaction(db, async (trx) => {
    await lockFunctionRow(db, trx, input.functionId);
    if (await requeueBuild(db, trx, input.deploymentId, { from: 'active' })) {
      await recordEvent(trx, {
        functionId: input.functionId,
        deploymentId: input.deploymentId,
        version: input.version,
        event: 'rebuild_requested',
        message: `version ${input.version} is being rebuilt from its archive: ${input.why}`,
      });
    }
  });
}

export interface ClaimedBuild {
  id: string;
  functionId: string;
  version: number;
  /** where the archive is now (its original key, or where cleanup moved it) */
  s3Key: string;
  attempts: number;
  archiveSha256: string | null;
  /** the configuration it runs with, as stored */
  config: StoredConfig;
  /** a configuration change never built yet: the version whose code it reuses (no build) */
  reuseFrom: string | null;
}

/**
 * Claims up to `limit` queued builds for `runnerId` in one statement: rows in `building` that
 * nobody holds, or whose holder's lease ran out (a crashed or partitioned runner), oldest first.
 * Attempts are counted as the claim is made, so a build that keeps killing its runners is given up
 * by `failExhaustedBuilds` instead of being retried forever.
 *
 * PostgreSQL: `FOR UPDATE SKIP LOCKED` lets concurrent runners each take different rows without
 * waiting on one another. SQLite has one writer at a time, so the same UPDATE … WHERE id IN
 * (SELECT …) is already atomic there (and SQLite would reject SKIP LOCKED).
 */
export async function claimBuilds(
  db: Db,
  input: { runnerId: string; limit: number; leaseMs: number; maxAttempts: number },
): Promise<ClaimedBuild[]> {
  if (input.limit <= 0) return [];
  const now = nowIso();
  const lease = new Date(Date.now() + input.leaseMs).toISOString();
  const lock = db.dialect === 'pg' ? 'FOR UPDATE SKIP LOCKED' : '';
  const result = await db.knex.raw(
    `UPDATE function_deployments
        SET claimed_by = ?, lease_expires_at = ?, attempts = attempts + 1, updated_at = ?
      WHERE id IN (
        SELECT id FROM function_deployments
         WHERE status = 'building'
           AND (claimed_by IS NULL OR lease_expires_at < ?)
           AND attempts < ?
         ORDER BY queued_at, id
         LIMIT ? ${lock})
      RETURNING id, function_id, version, COALESCE(archive_key, s3_key) AS source_key, attempts, archive_sha256, config,
                base_deployment_id, deployed_at`,
    [input.runnerId, lease, now, now, input.maxAttempts, input.limit],
  );
  const rows: any[] = db.dialect === 'pg' ? result.rows : result;
  return rows.map((r) => ({
    id: r.id,
    functionId: r.function_id,
    version: num(r.version),
    s3Key: r.source_key,
    attempts: num(r.attempts),
    archiveSha256: r.archive_sha256 ?? null,
    config: parseStoredConfig(r.config),
    // once built, a configuration change owns its artifact and archive: a rebuild uses its archive
    reuseFrom: r.base_deployment_id && !r.deployed_at ? r.base_deployment_id : null,
  }));
}

/**
 * A version that was built before (restored from its archive, or rebuilt because its image
 * vanished) returns to what it was when a rebuild fails for good: its archive is still good. The
 * live version stays marked built (its error recorded), so there are never zero live rows.
 */
function statusAfterFailedBuild(dep: { is_active: unknown; archived_at: unknown; image_removed_at: unknown }): string {
  if (bool(dep.is_active)) return BUILT_STATUS;
  return dep.archived_at || dep.image_removed_at ? 'archived' : 'failed';
}

/** Builds whose last allowed attempt was lost (its lease ran out) are failed with the reason. */
export async function failExhaustedBuilds(db: Db, maxAttempts: number): Promise<number> {
  const now = nowIso();
  const rows = await db
    .knex('function_deployments')
    .where({ status: 'building' })
    .andWhere('attempts', '>=', maxAttempts)
    .andWhere((q) => q.whereNull('claimed_by').orWhere('lease_expires_at', '<', now))
    .select('id', 'function_id', 'version', 'error', 'is_active', 'archived_at', 'image_removed_at');
  let failed = 0;
  for (const r of rows) {
    const reason = `build abandoned after ${maxAttempts} attempts${r.error ? `; last error: ${r.error}` : ' (runners stopped responding)'}`;
    // Each row in its own transaction that writes first (re-checking the condition), so no
    // transaction upgrades a read lock on SQLite.
    await withTransaction(db, async (trx) => {
      const moved = await trx('function_deployments')
        .where({ id: r.id, status: 'building' })
        .andWhere('attempts', '>=', maxAttempts)
        .andWhere((q) => q.whereNull('claimed_by').orWhere('lease_expires_at', '<', now))
        .update({ status: statusAfterFailedBuild(r), error: reason, claimed_by: null, lease_expires_at: null, updated_at: now });
      if (!moved) return;
      failed++;
      await recordEvent(trx, {
        functionId: r.function_id,
        deploymentId: r.id,
        version: num(r.version),
        event: 'build_failed',
        message: `version ${r.version} failed: ${reason}`,
      });
    });
  }
  return failed;
}

/** Extends the lease while the build runs; false means another runner holds it now: stop. */
export async function renewLease(
  db: Db,
  input: { deploymentId: string; runnerId: string; leaseMs: number; buildLogs?: string },
): Promise<boolean> {
  const moved = await db.knex('function_deployments')
    .where({ id: input.deploymentId, claimed_by: input.runnerId, status: 'building' })
    .update({
      lease_expires_at: new Date(Date.now() + input.leaseMs).toISOString(),
      ...(input.buildLogs === undefined ? {} : { build_logs: input.buildLogs }),
      updated_at: nowIso(),
    });
  return moved > 0;
}

export type FinishOutcome =
  | { fenced: true }
  | { fenced: false; activated: boolean; reason?: Extract<ActivationResult, { activated: false }>['reason'] };

/**
 * The build of a claimed deployment succeeded: mark it built and apply the activation rule, in one
 * transaction. Fenced by the claim: a runner whose lease was taken over changes nothing.
 */
export async function finishBuild(
  db: Db,
  input: {
    deploymentId: string;
    functionId: string;
    runnerId: string;
    imageTag: string | null;
    /** the driver that built it: only that driver can run, clean up or delete it */
    driver: 'docker' | 'process';
    buildLogs: string;
  },
): Promise<FinishOutcome> {
  return withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, input.functionId))) return { fenced: true };
    const now = nowIso();
    const moved = await trx('function_deployments')
      .where({ id: input.deploymentId, claimed_by: input.runnerId, status: 'building' })
      .update({
        status: BUILT_STATUS,
        image_tag: input.imageTag,
        runtime_driver: input.driver,
        build_logs: input.buildLogs,
        error: null,
        claimed_by: null,
        lease_expires_at: null,
        image_removed_at: null,
        deployed_at: now,
        updated_at: now,
      });
    if (moved === 0) return { fenced: true };
    // a live version rebuilt (its image had vanished) serves again
    await announceFunctionChanged(db, trx, input.functionId);
    const dep = await trx('function_deployments').where({ id: input.deploymentId }).first('version');
    await recordEvent(trx, {
      functionId: input.functionId,
      deploymentId: input.deploymentId,
      version: num(dep.version),
      event: 'build_succeeded',
      message: `version ${dep.version} built${input.imageTag ? ` as ${input.imageTag}` : ''}`,
    });
    const result = await activateDeploymentInTransaction(db, trx, {
      functionId: input.functionId,
      deploymentId: input.deploymentId,
      reason: { kind: 'build' },
    });
    return result.activated ? { fenced: false, activated: true } : { fenced: false, activated: false, reason: result.reason };
  });
}

/**
 * The build failed. `retry`: an infrastructure fault (engine or S3 unreachable) — the claim is
 * released for another attempt while attempts remain. Otherwise (a bad archive, a failing
 * Dockerfile) it fails for good. Never touches the live version. Fenced like finishBuild.
 */
export async function failBuild(
  db: Db,
  input: {
    deploymentId: string;
    functionId: string;
    runnerId: string;
    error: string;
    buildLogs: string;
    retry: boolean;
    maxAttempts: number;
  },
): Promise<{ fenced: boolean; willRetry: boolean }> {
  return withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, input.functionId))) return { fenced: true, willRetry: false };
    const dep = await trx('function_deployments')
      .where({ id: input.deploymentId, claimed_by: input.runnerId, status: 'building' })
      .first('version', 'attempts', 'is_active', 'archived_at', 'image_removed_at');
    if (!dep) return { fenced: true, willRetry: false };
    const now = nowIso();
    const willRetry = input.retry && num(dep.attempts) < input.maxAttempts;
    const error = willRetry
      ? input.error
      : input.retry
        ? `build abandoned after ${dep.attempts} attempts; last error: ${input.error}`
        : input.error;
    const finalStatus = statusAfterFailedBuild(dep);
    await trx('function_deployments')
      .where({ id: input.deploymentId })
      .update({
        ...(willRetry ? {} : { status: finalStatus }),
        error,
        build_logs: input.buildLogs,
        claimed_by: null,
        lease_expires_at: null,
        updated_at: now,
      });
    await recordEvent(trx, {
      functionId: input.functionId,
      deploymentId: input.deploymentId,
      version: num(dep.version),
      event: willRetry ? 'build_retried' : 'build_failed',
      message: willRetry
        ? `attempt ${dep.attempts} of version ${dep.version} failed (${input.error}); it will be retried`
        : `version ${dep.version} failed: ${error}`,
    });
    return { fenced: false, willRetry };
  });
}

/** Graceful shutdown: hand the build back without spending one of its attempts. */
export async function releaseClaim(db: Db, input: { deploymentId: string; runnerId: string }): Promise<void> {
  await db.knex('function_deployments')
    .where({ id: input.deploymentId, claimed_by: input.runnerId, status: 'building' })
    .update({
      claimed_by: null,
      lease_expires_at: null,
      attempts: db.knex.raw('CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END'),
      updated_at: nowIso(),
    });
}

export async function recordBuildStarted(db: Db, build: ClaimedBuild, runnerId: string): Promise<void> {
  await recordEvent(db.knex, {
    functionId: build.functionId,
    deploymentId: build.id,
    version: build.version,
    event: 'build_started',
    message: `build of version ${build.version} started by ${runnerId} (attempt ${build.attempts})`,
  });
}
