// Retention cleanup (the seed's "Version Cleanup"): keep the newest KEEP_LAST_N built versions and
// the live one; older built versions lose their image and have their archive moved to cheaper
// storage (or deleted); old failed versions lose their archive; uploads that never completed
// expire. History rows are never deleted: each says what was removed.
//
// Safety rules, each with the failure it prevents:
// - A version is archived in two steps: a transaction marks it `archiving` after re-checking,
//   under the function's lock, that it is built, not live and not claimed (so a rollback that just
//   made it live wins); side effects follow; a second transaction records the result. A run killed
//   in between leaves `archiving` rows, which the next run finishes first.
// - An archive is copied before the original is deleted, and every side effect is idempotent, so
//   repeating a step after a crash is harmless and no row ends up pointing at an object that is gone.
// - One run at a time across all runners (shared/db/lock.ts).
// - A version that traffic or a person may still reach by name (the candidate, a tagged version,
//   the version of a running canary) keeps its image whatever its age: archiving it would turn its
//   next request into a rebuild. The plan skips it and names it in `kept`; the claim in step 1
//   re-checks under the function's lock, so a tag set after planning still protects it.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { tryAcquireLock } from '../db/lock.ts';
import { nowIso } from '../db/time.ts';
import type { Logger } from '../logger.ts';
import type { Platform } from '../platform.ts';
import type { RuntimeDriver } from '../runtime/types.ts';
import { recordEvent } from './events.ts';
import { BUILT_STATUS, type DeploymentRow } from './model.ts';
import { versionDriver } from './version-driver.ts';
import { sweepBuildWorkDirs } from '../work-dirs.ts';
import { expireUpload } from './uploads.ts';
import { pruneMetrics } from './metrics.ts';
import { sweepUploadTemp } from '../storage/upload-temp.ts';

export type ArchiveMode = 'storage-class' | 'prefix' | 'delete';

export interface CleanupOptions {
  keepLastN: number;
  archiveMode: ArchiveMode;
  storageClass: string;
  /** uploads are expired this long after their URL expired */
  uploadGraceSeconds: number;
  invocationLogsKeep: number;
  /** functions worked on at once (their S3 and engine calls overlap; each function's steps stay in order) */
  concurrency: number;
  dryRun?: boolean;
  /** only functions with this name (any owner) */
  functionName?: string;
  holder?: string;
}

export type PlannedAction =
  | { action: 'archive'; functionId: string; name: string; version: number; deploymentId: string; mode: ArchiveMode }
  | { action: 'resume-archive'; functionId: string; name: string; version: number; deploymentId: string; mode: ArchiveMode }
  | { action: 'delete-failed-archive'; functionId: string; name: string; version: number; deploymentId: string }
  | { action: 'expire-upload'; functionId: string; name: string; version: number; deploymentId: string };

/** Why retention left a version alone that the keep-last-N rule would have archived. */
export type KeptReason = 'canary' | 'candidate' | `tagged:${string}`;

export interface KeptVersion {
  functionId: string;
  name: string;
  version: number;
  reason: KeptReason;
}

export interface CleanupSummary {
  skipped: boolean;
  reason?: string;
  dryRun: boolean;
  functionsScanned: number;
  versionsArchived: number;
  archivesDeleted: number;
  objectsMoved: number;
  objectsRemoved: number;
  imagesRemoved: number;
  failedArchivesRemoved: number;
  uploadsExpired: number;
  invocationLogsPruned: number;
  /** per-minute metric rows older than METRICS_RETENTION_DAYS */
  metricsPruned: number;
  /** build work directories left by runners that died (see shared/work-dirs.ts) */
  workDirsRemoved: number;
  uploadTempFilesRemoved: number;
  bytesFreed: number;
  errors: number;
  durationMs: number;
  plan: PlannedAction[];
  /** versions past keep-last-N left alone because they are still reachable (see KeptReason) */
  kept: KeptVersion[];
}

/** Where a version's archive goes under ARCHIVE_MODE=prefix. */
export function archivePrefixKey(s3Key: string): string {
  return `archive/${s3Key}`;
}

interface Row {
  id: string;
  function_id: string;
  name: string;
  version: number;
  status: string;
  is_active: unknown;
  claimed_by: string | null;
  image_tag: string | null;
  runtime_driver: string | null;
  s3_key: string;
  archive_key: string | null;
  archive_size: unknown;
  archive_removed_at: unknown;
  last_version: number;
}

const ROW_COLUMNS = [
  'd.id', 'd.function_id', 'f.name', 'd.version', 'd.status', 'd.is_active', 'd.claimed_by', 'd.image_tag', 'd.runtime_driver',
  'd.s3_key', 'd.archive_key', 'd.archive_size', 'd.archive_removed_at', 'f.last_version',
];

function emptySummary(dryRun: boolean): CleanupSummary {
  return {
    skipped: false, dryRun, functionsScanned: 0, versionsArchived: 0, archivesDeleted: 0, objectsMoved: 0,
    objectsRemoved: 0, imagesRemoved: 0, failedArchivesRemoved: 0, uploadsExpired: 0, invocationLogsPruned: 0, workDirsRemoved: 0,
    uploadTempFilesRemoved: 0, metricsPruned: 0,
    bytesFreed: 0, errors: 0, durationMs: 0, plan: [],
    kept: [],
  };
}

/**
 * The function's deployments that must keep their image, by deployment id, with the reason (the
 * one rule, used by the plan and by the claim). One reason per version, the strongest first: a
 * canary's version is also the candidate, and a tagged candidate is named as the candidate.
 */
export async function protectedDeployments(q: Knex | Knex.Transaction, functionIds: string[]): Promise<Map<string, KeptReason>> {
  const reasons = new Map<string, KeptReason>();
  if (functionIds.length === 0) return reasons;
  const tags: { deployment_id: string; tag: string }[] = await q('function_tags')
    .whereIn('function_id', functionIds)
    .orderBy('tag')
    .select('deployment_id', 'tag');
  const tagsOf = new Map<string, string[]>();
  for (const t of tags) tagsOf.set(t.deployment_id, [...(tagsOf.get(t.deployment_id) ?? []), t.tag]);
  for (const [id, list] of tagsOf) reasons.set(id, `tagged:${list.join(',')}`);
  // the candidate is protected at 0 % too: it is still one PUT …/traffic away from taking requests
  const candidates: { candidate_deployment_id: string }[] = await q('functions')
    .whereIn('id', functionIds)
    .whereNotNull('candidate_deployment_id')
    .select('candidate_deployment_id');
  for (const c of candidates) reasons.set(c.candidate_deployment_id, 'candidate');
  const canaries: { deployment_id: string }[] = await q('function_canaries')
    .whereIn('function_id', functionIds)
    .where('status', 'running')
    .select('deployment_id');
  for (const c of canaries) reasons.set(c.deployment_id, 'canary');
  return reasons;
}

/**
 * Decides, for one function's rows, what the policy removes and which versions it would have
 * removed but keeps (`protectedIds`, from protectedDeployments). Pure: the same input gives the same plan.
 */
export function planFunction(
  rows: Row[],
  keepLastN: number,
  mode: ArchiveMode,
  protectedIds: ReadonlyMap<string, KeptReason> = new Map(),
): { plan: PlannedAction[]; kept: KeptVersion[] } {
  const plan: PlannedAction[] = [];
  const kept: KeptVersion[] = [];
  const built = rows.filter((r) => r.status === BUILT_STATUS).sort((a, b) => num(b.version) - num(a.version));
  const keep = new Set(built.slice(0, keepLastN).map((r) => r.id));
  for (const r of built) {
    if (keep.has(r.id) || bool(r.is_active) || r.claimed_by) continue;
    const reason = protectedIds.get(r.id);
    if (reason) {
      kept.push({ functionId: r.function_id, name: r.name, version: num(r.version), reason });
      continue;
    }
    plan.push({ action: 'archive', functionId: r.function_id, name: r.name, version: num(r.version), deploymentId: r.id, mode });
  }
  for (const r of rows) {
    if (r.status === 'archiving') {
      plan.push({ action: 'resume-archive', functionId: r.function_id, name: r.name, version: num(r.version), deploymentId: r.id, mode });
    }
    // "the N newest versions, counting every version": by number against the highest allocated
    if (r.status === 'failed' && !r.archive_removed_at && num(r.version) <= num(r.last_version) - keepLastN) {
      plan.push({ action: 'delete-failed-archive', functionId: r.function_id, name: r.name, version: num(r.version), deploymentId: r.id });
    }
  }
  return { plan, kept };
}

async function forEachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

export class Cleanup {
  private readonly log: Logger;

  constructor(
    private readonly p: Platform,
    private readonly driver: RuntimeDriver,
    private readonly opts: CleanupOptions,
  ) {
    this.log = p.logger.child({ job: 'cleanup' });
  }

  private get db(): Db {
    return this.p.db;
  }

  async run(): Promise<CleanupSummary> {
    const started = Date.now();
    const summary = emptySummary(Boolean(this.opts.dryRun));
    const lock = this.opts.dryRun
      ? { release: async () => {} }
      : await tryAcquireLock(this.db, 'cleanup', this.opts.holder ?? `cleanup-${process.pid}`);
    if (!lock) {
      summary.skipped = true;
      summary.reason = 'another cleanup is running';
      this.log.info('cleanup skipped: another run holds the lock');
      return summary;
    }
    try {
      await this.expireUploads(summary);
      if (!this.opts.dryRun) await this.guard(summary, null, () => this.sweepUploadTemp(summary));
      await this.scanFunctions(summary);
      if (!this.opts.dryRun) {
        await this.pruneInvocationLogs(summary);
        await this.guard(summary, null, async () => {
          summary.metricsPruned = await pruneMetrics(this.db, this.p.config.delivery.metricsRetentionDays);
        });
        await this.guard(summary, null, async () => {
          summary.workDirsRemoved = await sweepBuildWorkDirs(this.p.config.dataDir);
        });
      }
    } finally {
      await lock.release();
    }
    summary.durationMs = Date.now() - started;
    const { plan, kept, ...counts } = summary;
    this.log.info(this.opts.dryRun ? 'cleanup plan (dry run, nothing changed)' : 'cleanup finished', {
      ...counts,
      planned: plan.length,
      kept: kept.length,
    });
    return summary;
  }

  private functionFilter(q: Knex.QueryBuilder): Knex.QueryBuilder {
    return this.opts.functionName ? q.where('f.name', this.opts.functionName) : q;
  }

  private async expireUploads(summary: CleanupSummary): Promise<void> {
    const cutoff = new Date(Date.now() - this.opts.uploadGraceSeconds * 1000).toISOString();
    const rows: (Row & DeploymentRow)[] = await this.functionFilter(
      this.db
        .knex('function_deployments as d')
        .join('functions as f', 'f.id', 'd.function_id')
        .where('d.status', 'pending_upload')
        // NULL: a multipart deploy killed mid-store before every row got an expiry; its age counts.
        .andWhere((q) =>
          q.where('d.upload_expires_at', '<', cutoff).orWhere((n) => n.whereNull('d.upload_expires_at').andWhere('d.created_at', '<', cutoff)),
        )
        .select([...ROW_COLUMNS, 'd.upload_expires_at', 'd.created_at']),
    );
    for (const r of rows) {
      summary.plan.push({ action: 'expire-upload', functionId: r.function_id, name: r.name, version: num(r.version), deploymentId: r.id });
      if (this.opts.dryRun) continue;
      await this.guard(summary, r, async () => {
        // The row moves first and the object goes only if this run moved it: a complete that got
        // there first has queued a build that needs the object. (The URL expired long ago, so
        // nothing can arrive after the delete.)
        if (await expireUpload(this.p, r)) {
          summary.uploadsExpired++;
        }
      });
    }
  }

  /** Temporary files of multipart deploys whose API process died mid-upload. */
  private async sweepUploadTemp(summary: CleanupSummary): Promise<void> {
    summary.uploadTempFilesRemoved = await sweepUploadTemp(this.p.config.dataDir);
  }

  private async scanFunctions(summary: CleanupSummary): Promise<void> {
    let after: string | null = null;
    const pageSize = 200;
    for (;;) {
      const page = this.db.knex('functions as f').orderBy('f.id').limit(pageSize).select('f.id');
      if (after !== null) page.where('f.id', '>', after);
      const fns: { id: string }[] = await this.functionFilter(page);
      if (fns.length === 0) break;
      after = fns[fns.length - 1]!.id;
      const rows: Row[] = await this.db
        .knex('function_deployments as d')
        .join('functions as f', 'f.id', 'd.function_id')
        .whereIn('d.function_id', fns.map((f) => f.id))
        .whereIn('d.status', [BUILT_STATUS, 'archiving', 'failed'])
        .select(ROW_COLUMNS);
      const guarded = await protectedDeployments(this.db.knex, fns.map((f) => f.id));
      const byFunction = new Map<string, Row[]>();
      for (const r of rows) {
        const list = byFunction.get(r.function_id) ?? [];
        list.push(r);
        byFunction.set(r.function_id, list);
      }
      summary.functionsScanned += fns.length;
      await forEachLimited(fns, this.opts.concurrency, async (fn) => {
        const fnRows = byFunction.get(fn.id) ?? [];
        const { plan, kept } = planFunction(fnRows, this.opts.keepLastN, this.opts.archiveMode, guarded);
        summary.plan.push(...plan);
        summary.kept.push(...kept);
        if (this.opts.dryRun) return;
        const rowsById = new Map(fnRows.map((r) => [r.id, r]));
        for (const action of plan) {
          const row = rowsById.get(action.deploymentId)!;
          await this.guard(summary, row, () =>
            action.action === 'delete-failed-archive' ? this.deleteFailedArchive(summary, row) : this.archiveVersion(summary, row),
          );
        }
      });
      if (fns.length < pageSize) break;
    }
  }

  /** Runs one action; a failure is logged and counted, and the run goes on with the next. */
  private async guard(summary: CleanupSummary, r: Row | null, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      summary.errors++;
      this.log.error('cleanup action failed; the next run retries it', {
        ...(r ? { functionId: r.function_id, deploymentId: r.id, version: num(r.version) } : {}),
        err,
      });
    }
  }

  private async archiveVersion(summary: CleanupSummary, r: Row): Promise<void> {
    // Another driver's artifact is invisible to this one: "removing" it would remove nothing and
    // record the image as gone. Leave the version untouched; a cleanup with the right driver does it.
    const builtBy = versionDriver(r);
    if (builtBy !== this.driver.name) {
      throw new Error(
        `version ${r.version} was built by the ${builtBy} driver but this cleanup runs the ${this.driver.name} driver: left as it is (run cleanup with RUNTIME_DRIVER=${builtBy})`,
      );
    }
    // Step 1: re-check under the function's lock and claim the row for archiving. The protections
    // are read again here: the plan's were read before this function's turn came (a tag or a
    // candidate set since, under the same lock, must still win).
    let keptFor: KeptReason | undefined;
    const claimed = await withTransaction(this.db, async (trx) => {
      await lockFunctionRow(this.db, trx, r.function_id);
      const current = await trx('function_deployments').where({ id: r.id }).first();
      if (!current) return null;
      if (current.status === 'archiving') return current; // resuming a killed run
      if (current.status !== BUILT_STATUS || bool(current.is_active) || current.claimed_by) return null;
      keptFor = (await protectedDeployments(trx, [r.function_id])).get(r.id);
      if (keptFor) return null;
      await trx('function_deployments').where({ id: r.id }).update({ status: 'archiving', updated_at: nowIso() });
      return current;
    });
    if (keptFor) summary.kept.push({ functionId: r.function_id, name: r.name, version: num(r.version), reason: keptFor });
    if (!claimed) return;

    // Step 2: side effects, each idempotent.
    const notes: string[] = [];
    await this.driver.removeArtifact({ functionId: r.function_id, version: num(r.version), imageTag: claimed.image_tag });
    summary.imagesRemoved++;
    notes.push(claimed.image_tag ? `image ${claimed.image_tag} removed` : 'unpacked artifact removed');

    const current: string = claimed.archive_key ?? claimed.s3_key;
    const size = num(claimed.archive_size);
    let archiveKey: string | null = claimed.archive_key ?? null;
    let storageClass: string | null = claimed.archive_storage_class ?? null;
    let status: 'archived' | 'deleted' = 'archived';
    const mode = this.opts.archiveMode;
    if (mode === 'delete') {
      await this.p.storage.delete(claimed.s3_key);
      if (claimed.archive_key) await this.p.storage.delete(claimed.archive_key);
      summary.objectsRemoved++;
      summary.bytesFreed += size;
      status = 'deleted';
      archiveKey = null;
      notes.push('archive deleted (ARCHIVE_MODE=delete)');
    } else if (mode === 'prefix') {
      const target = archivePrefixKey(claimed.s3_key);
      if (current !== target) {
        // Copy first, delete after: a run killed between the two leaves both, never neither.
        if (await this.p.storage.head(current)) await this.p.storage.copy(current, target);
        else if (!(await this.p.storage.head(target))) throw new Error(`archive of v${r.version} is missing from ${current}`);
        await this.p.storage.delete(current);
        summary.objectsMoved++;
      }
      archiveKey = target;
      notes.push(`archive moved to ${target}`);
    } else {
      if (storageClass !== this.opts.storageClass) {
        await this.p.storage.copy(current, current, { storageClass: this.opts.storageClass });
        storageClass = this.opts.storageClass;
        summary.objectsMoved++;
      }
      notes.push(`archive kept at ${current} in storage class ${storageClass}`);
    }

    // Step 3: record what is true now.
    await withTransaction(this.db, async (trx) => {
      const now = nowIso();
      const moved = await trx('function_deployments')
        .where({ id: r.id, status: 'archiving' })
        .update({
          status,
          archive_key: status === 'deleted' ? null : archiveKey,
          archive_storage_class: status === 'deleted' ? null : storageClass,
          archive_removed_at: status === 'deleted' ? now : null,
          image_removed_at: now,
          archived_at: now,
          cleanup_note: notes.join('; '),
          updated_at: now,
        });
      if (!moved) return;
      if (status === 'deleted') summary.archivesDeleted++;
      else summary.versionsArchived++;
      await recordEvent(trx, {
        functionId: r.function_id,
        deploymentId: r.id,
        version: num(r.version),
        event: status === 'deleted' ? 'archive_deleted' : 'archived',
        message: `version ${r.version} ${status} by retention cleanup: ${notes.join('; ')}`,
      });
    });
  }

  private async deleteFailedArchive(summary: CleanupSummary, r: Row): Promise<void> {
    // Delete, then record: killed in between, the next run deletes again (harmless) and records.
    await this.p.storage.delete(r.s3_key);
    if (r.archive_key) await this.p.storage.delete(r.archive_key);
    const now = nowIso();
    const moved = await this.db
      .knex('function_deployments')
      .where({ id: r.id, status: 'failed' })
      .whereNull('archive_removed_at')
      .update({ archive_removed_at: now, cleanup_note: 'archive of a failed version deleted by retention cleanup', updated_at: now });
    if (moved) {
      summary.failedArchivesRemoved++;
      summary.objectsRemoved++;
      summary.bytesFreed += num(r.archive_size);
    }
  }

  private async pruneInvocationLogs(summary: CleanupSummary): Promise<void> {
    const keep = this.opts.invocationLogsKeep;
    const heavy: { function_id: string }[] = await this.db
      .knex('function_invocations')
      .select('function_id')
      .groupBy('function_id')
      .havingRaw('count(*) > ?', [keep]);
    for (const { function_id } of heavy) {
      const boundary = await this.db
        .knex('function_invocations')
        .where({ function_id })
        .orderBy('id', 'desc')
        .offset(keep)
        .first('id');
      if (!boundary) continue;
      summary.invocationLogsPruned += await this.db
        .knex('function_invocations')
        .where({ function_id })
        .andWhere('id', '<=', boundary.id)
        .delete();
    }
  }
}

export function cleanupOptionsFromConfig(p: Platform, overrides: Partial<CleanupOptions> = {}): CleanupOptions {
  return {
    keepLastN: p.config.retention.keepLastN,
    archiveMode: p.config.cleanup.archiveMode,
    storageClass: p.config.cleanup.archiveStorageClass,
    uploadGraceSeconds: p.config.cleanup.uploadGraceSeconds,
    invocationLogsKeep: p.config.cleanup.invocationLogsKeep,
    concurrency: p.config.cleanup.concurrency,
    ...overrides,
  };
}

export function runCleanup(p: Platform, driver: RuntimeDriver, overrides: Partial<CleanupOptions> = {}): Promise<CleanupSummary> {
  return new Cleanup(p, driver, cleanupOptionsFromConfig(p, overrides)).run();
}
