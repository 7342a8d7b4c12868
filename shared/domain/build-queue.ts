// The build queue is the function_deployments table itself: a row in `building` is work for a
// runner. Entering the queue also wakes PostgreSQL runners at once (LISTEN/NOTIFY); polling stays
// the fallback, and the only path on SQLite.
import { EventEmitter } from 'node:events';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, dbNowMs, dbTime, dbTimeSql, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';
import { inStatus } from '../db/status-guard.ts';
import { describeService, formatSeconds, type BuildFailure } from '../runtime/build-failure.ts';
import { activateDeploymentInTransaction, type ActivationResult } from './activation.ts';
import { recordEvent, type FunctionEvent } from './events.ts';
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

/** announceQueued for a transaction run outside knex (sqliteImmediate): call once it has committed. */
export function announceQueuedCommittedLocally(): void {
  localQueue.emit('queued');
}

/**
 * enqueueBuild as one PostgreSQL statement (pg-direct.ts), with the upload's event and the runners'
 * wake-up: it answers one row when it moved the version, none when another request moved it first
 * (then it records and announces nothing). pg_notify is NOTIFY's function form: delivered at commit.
 */
export function enqueueBuildPgStatement(
  dep: { id: string; function_id: string; version: number },
  archive: { size: number; sha256: string },
  event: { event: FunctionEvent; message: string },
): { sql: string; bindings: unknown[] } {
  const now = nowIso();
  // the status guard as inStatus writes it (shared/db/status-guard.ts): found by the key only
  return {
    sql:
      "WITH q AS (UPDATE function_deployments SET status = 'building', archive_size = ?, archive_sha256 = ?, queued_at = ?, updated_at = ? " +
      "WHERE id = ? AND (status = 'pending_upload') IS TRUE RETURNING id), " +
      'e AS (INSERT INTO function_logs (function_id, deployment_id, version, event, message, created_at) SELECT ?, q.id, ?, ?, ?, ? FROM q) ' +
      'SELECT pg_notify(?, ?) FROM q',
    bindings: [archive.size, archive.sha256, now, now, dep.id, dep.function_id, dep.version, event.event, event.message, now, BUILD_QUEUED_CHANNEL, ''],
  };
}

/** pending_upload → building, once; false when another request already moved it. */
export async function enqueueBuild(
  db: Db,
  trx: Knex.Transaction,
  deploymentId: string,
  archive: { size: number; sha256: string },
): Promise<boolean> {
  const now = nowIso();
  const moved = await inStatus(trx('function_deployments').where({ id: deploymentId }), 'pending_upload')
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
  const moved = await inStatus(trx('function_deployments').where({ id: deploymentId }), opts.from)
    .update({
      status: 'building',
      attempts: 0,
      // a new round of attempts: its own backoff and its own time to wait out an outage
      ...UNATTEMPTED,
      error: null,
      last_error: null,
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
  /**
   * This claim's own token: renewing, finishing, failing and releasing the build match on it, not
   * on the runner's id. A runner that lost its lease holds an old token even if it claims the same
   * build again, and two runners sharing a RUNNER_ID hold different ones.
   */
  claimToken: string;
  /** the X-Request-Id of the request that created the version: its build logs with it */
  requestId: string | null;
}

/** What the queue does with failed attempts (config.runner). */
export interface RetryPolicy {
  maxAttempts: number;
  /** the first retry waits this long, each later one twice as long as the one before (±20 %) */
  retryBaseMs: number;
  /** how long an outage is waited out, from the build's first attempt */
  buildTimeoutMs: number;
}

/**
 * The wait before retry `n` (1: the first): retryBaseMs × 2^(n−1), ±20 % so that builds failed by
 * one outage do not all come back at the same instant.
 */
export function retryDelayMs(baseMs: number, n: number, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(1, n) - 1, 30);
  return Math.round(baseMs * 2 ** exponent * (0.8 + 0.4 * random()));
}

/**
 * Claims up to `limit` queued builds for `runnerId` in one statement: rows in `building` that
 * nobody holds and whose backoff (next_attempt_at) is over, oldest first. Builds whose holder's
 * lease ran out are handed back first, with their backoff, by `retryExpiredClaims`. Attempts are
 * counted as the claim is made, so a build that keeps killing its runners is given up by
 * `failExhaustedBuilds` instead of being retried forever. Each claimed row gets a fresh random
 * claim token (made by the database, per row), and every time is the database's clock.
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
  const now = dbTimeSql(db);
  const claimable = `status = 'building'
           AND claimed_by IS NULL
           AND (next_attempt_at IS NULL OR next_attempt_at <= ${now})
           AND attempts < ?`;
  // On SQLite an UPDATE takes the database's write lock even when it matches nothing, waiting up
  // to busy_timeout (10 s) for another process that holds it (a cleanup run, another runner),
  // with the event loop blocked, since the driver is synchronous. An idle runner polls: it asks
  // first with a read, which waits for no one (WAL). A build queued after the read is claimed at
  // the next wake-up, as one committed after the UPDATE would be.
  if (db.dialect === 'sqlite') {
    const [any] = await db.knex.raw(`SELECT 1 AS queued FROM function_deployments WHERE ${claimable} LIMIT 1`, [input.maxAttempts]);
    if (!any) return [];
  }
  const lock = db.dialect === 'pg' ? 'FOR UPDATE SKIP LOCKED' : '';
  const token = db.dialect === 'pg' ? 'gen_random_uuid()::text' : 'lower(hex(randomblob(16)))';
  const result = await db.knex.raw(
    `UPDATE function_deployments
        SET claimed_by = ?, claim_token = ${token}, lease_expires_at = ${dbTimeSql(db, input.leaseMs)},
            attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, ${now}),
            next_attempt_at = NULL, updated_at = ?
      WHERE id IN (
        SELECT id FROM function_deployments
         WHERE ${claimable}
         ORDER BY queued_at, id
         LIMIT ? ${lock})
      RETURNING id, function_id, version, COALESCE(archive_key, s3_key) AS source_key, attempts, archive_sha256, config,
                base_deployment_id, deployed_at, claim_token, request_id`,
    [input.runnerId, nowIso(), input.maxAttempts, input.limit],
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
    claimToken: r.claim_token,
    requestId: r.request_id ?? null,
  }));
}

/**
 * How long until a queued build may become claimable (a backoff ends, or a runner's lease runs
 * out), on the database's clock; null when nothing waits. The runner sets a timer on it, so a
 * retry is not late by a whole poll interval.
 */
export async function nextQueueChangeInMs(db: Db): Promise<number | null> {
  const due = 'CASE WHEN claimed_by IS NULL THEN next_attempt_at ELSE lease_expires_at END';
  // only times still ahead: what is due already was for the claim that just ran to take
  const result = await db.knex.raw(
    `SELECT MIN(${due}) AS at, ${dbTimeSql(db)} AS now
       FROM function_deployments
      WHERE status = 'building' AND ${due} > ${dbTimeSql(db)}`,
  );
  const row = (db.dialect === 'pg' ? result.rows : result)[0];
  if (!row?.at) return null;
  return Math.max(0, new Date(row.at).getTime() - new Date(row.now).getTime());
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

const RELEASED = { claimed_by: null, claim_token: null, lease_expires_at: null } as const;

/** No build attempted yet: no claim, no backoff, no outage waited out (a new version, a requeue). */
export const UNATTEMPTED = { ...RELEASED, next_attempt_at: null, first_attempt_at: null, outage_retries: 0 } as const;

/** Builds whose last allowed attempt was lost (its lease ran out) are failed with the reason. */
export async function failExhaustedBuilds(db: Db, maxAttempts: number): Promise<number> {
  const unheld = (q: Knex.QueryBuilder) => q.whereNull('claimed_by').orWhere('lease_expires_at', '<', dbTime(db));
  const rows = await db
    .knex('function_deployments')
    .where({ status: 'building' })
    .andWhere('attempts', '>=', maxAttempts)
    .andWhere(unheld)
    .select('id', 'function_id', 'version', 'error', 'is_active', 'archived_at', 'image_removed_at');
  let failed = 0;
  for (const r of rows) {
    const reason = `build abandoned after ${maxAttempts} attempts${r.error ? `; last error: ${r.error}` : ' (runners stopped responding)'}`;
    // Each row in its own transaction that writes first (re-checking the condition), so no
    // transaction upgrades a read lock on SQLite.
    await withTransaction(db, async (trx) => {
      const moved = await inStatus(trx('function_deployments').where({ id: r.id }), 'building')
        .andWhere('attempts', '>=', maxAttempts)
        .andWhere(unheld)
        .update({ status: statusAfterFailedBuild(r), error: reason, ...RELEASED, next_attempt_at: null, updated_at: nowIso() });
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

/**
 * Builds whose runner stopped renewing the lease (killed, partitioned, paused) before their last
 * attempt: taken back and retried after the backoff. The attempt counts: the build itself may be
 * what kills its runners. (On the last attempt, failExhaustedBuilds fails it instead.)
 */
export async function retryExpiredClaims(db: Db, policy: Pick<RetryPolicy, 'maxAttempts' | 'retryBaseMs'>): Promise<number> {
  const rows = await db
    .knex('function_deployments')
    .where({ status: 'building' })
    .whereNotNull('claimed_by')
    .andWhere('lease_expires_at', '<', dbTime(db))
    .andWhere('attempts', '<', policy.maxAttempts)
    .select('id', 'function_id', 'version', 'claimed_by', 'claim_token', 'attempts');
  let retried = 0;
  for (const r of rows) {
    const attempts = num(r.attempts);
    const delay = retryDelayMs(policy.retryBaseMs, attempts);
    const error = `attempt ${attempts} was abandoned: runner ${r.claimed_by} stopped renewing its lease`;
    await withTransaction(db, async (trx) => {
      // the same claim, still expired: a renewal that came in meanwhile keeps it
      const moved = await inStatus(trx('function_deployments').where({ id: r.id, claim_token: r.claim_token }), 'building')
        .andWhere('lease_expires_at', '<', dbTime(db))
        .update({ ...RELEASED, next_attempt_at: dbTime(db, delay), error, last_error: error, updated_at: nowIso() });
      if (!moved) return;
      retried++;
      await recordEvent(trx, {
        functionId: r.function_id,
        deploymentId: r.id,
        version: num(r.version),
        event: 'build_retried',
        message: `${error}; version ${r.version} is retried in ${formatSeconds(delay)} s`,
      });
    });
  }
  return retried;
}

/**
 * Extends the lease while the build runs, on the database's clock; false means this claim is
 * over (another claim holds the build now, or it was handed back): stop.
 */
export async function renewLease(
  db: Db,
  input: { deploymentId: string; claimToken: string; leaseMs: number; buildLogs?: string },
): Promise<boolean> {
  const moved = await inStatus(db.knex('function_deployments').where({ id: input.deploymentId, claim_token: input.claimToken }), 'building')
    .update({
      lease_expires_at: dbTime(db, input.leaseMs),
      ...(input.buildLogs === undefined ? {} : { build_logs: input.buildLogs }),
      updated_at: nowIso(),
    });
  return moved > 0;
}

/**
 * Writes a running build's log so far, for those who follow it (the event stream reads it), fenced
 * by the claim like the lease: a runner whose claim is over writes nothing.
 */
export async function saveBuildLog(db: Db, input: { deploymentId: string; claimToken: string; buildLogs: string }): Promise<void> {
  await inStatus(db.knex('function_deployments').where({ id: input.deploymentId, claim_token: input.claimToken }), 'building')
    .update({ build_logs: input.buildLogs });
}

export type FinishOutcome =
  | { fenced: true }
  | { fenced: false; activated: boolean; reason?: Extract<ActivationResult, { activated: false }>['reason'] };

/**
 * The build of a claimed deployment succeeded: mark it built and apply the activation rule, in one
 * transaction. Fenced by the claim token: a runner whose claim is over changes nothing.
 */
export async function finishBuild(
  db: Db,
  input: {
    deploymentId: string;
    functionId: string;
    claimToken: string;
    imageTag: string | null;
    /** the driver that built it: only that driver can run, clean up or delete it */
    driver: 'docker' | 'process';
    buildLogs: string;
  },
): Promise<FinishOutcome> {
  return withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, input.functionId))) return { fenced: true };
    const now = nowIso();
    const moved = await inStatus(trx('function_deployments').where({ id: input.deploymentId, claim_token: input.claimToken }), 'building')
      .update({
        status: BUILT_STATUS,
        image_tag: input.imageTag,
        runtime_driver: input.driver,
        build_logs: input.buildLogs,
        // last_error stays: history shows what the earlier attempts ran into
        error: null,
        ...RELEASED,
        next_attempt_at: null,
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

export interface FailOutcome {
  fenced: boolean;
  /** the build goes back to the queue, to be claimed again in `retryInMs` */
  willRetry: boolean;
  retryInMs?: number;
  /** what was recorded as the build's error */
  error?: string;
}

/**
 * An attempt failed; `failure` (shared/runtime/build-failure.ts) says how:
 * - final: the build fails for good now;
 * - unknown: the attempt counts; retried after retryBaseMs × 2^(attempt−1) while attempts remain;
 * - outage: the attempt is given back and the build waits, backing off on its own count of
 *   outage retries, until BUILD_TIMEOUT_MS has passed since its first attempt; then it fails for
 *   good, naming the outage.
 * Never touches the live version. Fenced by the claim token like finishBuild.
 */
export async function failBuild(
  db: Db,
  input: {
    deploymentId: string;
    functionId: string;
    claimToken: string;
    failure: BuildFailure;
    buildLogs: string;
    policy: RetryPolicy;
  },
): Promise<FailOutcome> {
  return withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, input.functionId))) return { fenced: true, willRetry: false };
    const dep = await inStatus(trx('function_deployments').where({ id: input.deploymentId, claim_token: input.claimToken }), 'building')
      .first('version', 'attempts', 'outage_retries', 'first_attempt_at', 'is_active', 'archived_at', 'image_removed_at');
    if (!dep) return { fenced: true, willRetry: false };
    const { failure, policy } = input;
    const version = num(dep.version);
    const attempts = num(dep.attempts);
    let retry: { inMs: number; patch: Record<string, unknown>; event: FunctionEvent; message: string } | null = null;
    let error = failure.message;
    if (failure.kind === 'unknown') {
      if (attempts < policy.maxAttempts) {
        const inMs = retryDelayMs(policy.retryBaseMs, attempts);
        retry = {
          inMs,
          patch: {},
          event: 'build_retried',
          message: `attempt ${attempts} of ${policy.maxAttempts} of version ${version} failed (${failure.message}); retrying in ${formatSeconds(inMs)} s`,
        };
      } else {
        error = `build abandoned after ${attempts} attempts; last error: ${failure.message}`;
      }
    } else if (failure.kind === 'outage') {
      const service = describeService(failure.service);
      const since = toIso(dep.first_attempt_at);
      const waitedMs = since ? (await dbNowMs(db, trx)) - new Date(since).getTime() : 0;
      const leftMs = policy.buildTimeoutMs - waitedMs;
      if (leftMs > 0) {
        const n = num(dep.outage_retries) + 1;
        // the last wait ends at the deadline: one more try then, not one long after it
        const inMs = Math.min(retryDelayMs(policy.retryBaseMs, n), leftMs);
        retry = {
          inMs,
          // the attempt is given back: an outage is not the build's failure
          patch: { attempts: Math.max(0, attempts - 1), outage_retries: n },
          event: 'build_waiting',
          message: `version ${version} waits for ${service} (${failure.message}); no attempt spent, retrying in ${formatSeconds(inMs)} s`,
        };
      } else {
        error = `${service} was unavailable for ${formatSeconds(Math.max(waitedMs, 0))} s (BUILD_TIMEOUT_MS ${formatSeconds(policy.buildTimeoutMs)} s): ${failure.message}`;
      }
    }
    await trx('function_deployments')
      .where({ id: input.deploymentId })
      .update({
        ...(retry ? { ...retry.patch, next_attempt_at: dbTime(db, retry.inMs) } : { status: statusAfterFailedBuild(dep), next_attempt_at: null }),
        error,
        last_error: error,
        build_logs: input.buildLogs,
        ...RELEASED,
        updated_at: nowIso(),
      });
    await recordEvent(trx, {
      functionId: input.functionId,
      deploymentId: input.deploymentId,
      version,
      event: retry ? retry.event : 'build_failed',
      message: retry ? retry.message : `version ${version} failed: ${error}`,
    });
    return { fenced: false, willRetry: retry !== null, retryInMs: retry?.inMs, error };
  });
}

/** Graceful shutdown: hand the build back without spending one of its attempts (fenced by the claim token). */
export async function releaseClaim(db: Db, input: { deploymentId: string; claimToken: string }): Promise<void> {
  await inStatus(db.knex('function_deployments').where({ id: input.deploymentId, claim_token: input.claimToken }), 'building')
    .update({
      ...RELEASED,
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
