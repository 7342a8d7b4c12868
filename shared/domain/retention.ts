// Retention cleanup (the seed's "Version Cleanup"): keep the newest KEEP_LAST_N built versions and
// the live one; older built versions lose their image and have their archive moved to cheaper
// storage (or deleted); old failed versions lose their archive; uploads that never completed
// expire. History rows are never deleted: each says what was removed.
//
// Safety rules, each with the failure it prevents:
// - A version is archived in three steps: a transaction marks it `archiving` after re-checking,
//   under the function's lock, that it is built, not live and not claimed (so a rollback that just
//   made it live wins); side effects follow; a second transaction records the result. A run killed
//   in between leaves `archiving` rows, which the next run finishes first. While a row is
//   `archiving`, a rollback to it answers 409 and a tag or the candidate cannot point at it.
// - An archive is copied before the original is deleted, and every side effect is idempotent, so
//   repeating a step after a crash is harmless and no row ends up pointing at an object that is gone.
// - One run at a time across all runners (shared/db/lock.ts).
// - A version that traffic or a person may still reach by name (the candidate, a tagged version,
//   the version of a running canary) keeps its image whatever its age: archiving it would turn its
//   next request into a rebuild. The plan skips it and names it in `kept`; the claim in step 1
//   re-checks under the function's lock, so a tag set after planning still protects it.
//
// Each step works on a batch of up to 1,000 versions (S3's DeleteObjects limit), set-based: the
// claim is one short transaction for the batch (lock the functions, read the rows and their
// protections, one UPDATE), the archives go with one DeleteObjects per 1,000 keys (copies and image
// removals run CLEANUP_CONCURRENCY at once), and the record is one UPDATE … FROM and one INSERT of
// the events. No S3 or engine call is made while a transaction is open: on SQLite that would hold
// the one write lock every deploy waits for.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, jsonRowsCte, lockFunctionRows, num, withTransaction } from '../db/dialect.ts';
import { tryAcquireLock } from '../db/lock.ts';
import { nowIso } from '../db/time.ts';
import type { Logger } from '../logger.ts';
import type { Platform } from '../platform.ts';
import type { RuntimeDriver } from '../runtime/types.ts';
import { recordEvents, type EventInput } from './events.ts';
import { BUILT_STATUS, type DeploymentRow } from './model.ts';
import { versionDriver } from './version-driver.ts';
import { sweepBuildWorkDirs } from '../work-dirs.ts';
import { expireUpload } from './uploads.ts';
import { pruneMetrics } from './metrics.ts';
import { sweepUploadTemp } from '../storage/upload-temp.ts';
import { DELETE_OBJECTS_MAX } from '../storage/s3-storage.ts';

export type ArchiveMode = 'storage-class' | 'prefix' | 'delete';

export interface CleanupOptions {
  keepLastN: number;
  archiveMode: ArchiveMode;
  storageClass: string;
  /** uploads are expired this long after their URL expired */
  uploadGraceSeconds: number;
  invocationLogsKeep: number;
  /** S3 copies and artifact removals made at once (each batch's DeleteObjects requests go one at a time) */
  concurrency: number;
  dryRun?: boolean;
  /** only functions with this name (any owner) */
  functionName?: string;
  holder?: string;
  /**
   * Called with each batch of archive actions after it was planned and before it is claimed: the
   * window in which a tag, a rollback or a traffic change can still race the claim (tests use it).
   */
  beforeClaim?: (batch: readonly PlannedAction[]) => Promise<void>;
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
  archive_storage_class: string | null;
  archive_size: unknown;
  archive_removed_at: unknown;
  last_version: number;
}

const ROW_COLUMNS = [
  'd.id', 'd.function_id', 'f.name', 'd.version', 'd.status', 'd.is_active', 'd.claimed_by', 'd.image_tag', 'd.runtime_driver',
  'd.s3_key', 'd.archive_key', 'd.archive_storage_class', 'd.archive_size', 'd.archive_removed_at', 'f.last_version',
];

/** Versions claimed, moved and recorded together: one DeleteObjects request's worth of keys. */
const BATCH_VERSIONS = DELETE_OBJECTS_MAX;

/** What the side effects did to one claimed version: the row step 3 writes. */
interface Outcome {
  row: Row;
  status: 'archived' | 'deleted';
  archiveKey: string | null;
  storageClass: string | null;
  notes: string[];
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

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
    // One batch's side effects and record overlap the next batch's planning and claim (one batch in
    // flight at most): the former wait on S3 and the engine, the latter on the database.
    let finishing: Promise<void> = Promise.resolve();
    try {
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
        const archive: PlannedAction[] = [];
        const failed: PlannedAction[] = [];
        for (const fn of fns) {
          const { plan, kept } = planFunction(byFunction.get(fn.id) ?? [], this.opts.keepLastN, this.opts.archiveMode, guarded);
          summary.plan.push(...plan);
          summary.kept.push(...kept);
          for (const action of plan) (action.action === 'delete-failed-archive' ? failed : archive).push(action);
        }
        if (!this.opts.dryRun) {
          const rowsById = new Map(rows.map((r) => [r.id, r]));
          for (const batch of chunks(archive, BATCH_VERSIONS)) {
            const claimed = await this.claimBatch(summary, batch, rowsById);
            await finishing;
            finishing = this.finishBatch(summary, claimed);
          }
          // two keys a version at most (the original and a moved archive)
          for (const batch of chunks(failed, BATCH_VERSIONS / 2)) {
            const failedRows = batch.map((a) => rowsById.get(a.deploymentId)!);
            await this.guard(summary, failedRows, () => this.deleteFailedArchives(summary, failedRows));
          }
        }
        if (fns.length < pageSize) break;
      }
    } finally {
      await finishing;
    }
  }

  /**
   * Runs one step for `rows`; a failure is logged and counted once per version, and the run goes
   * on with the next batch (the versions stay as the step found them, or `archiving`).
   */
  private async guard(summary: CleanupSummary, rows: Row | readonly Row[] | null, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (err) {
      this.failed(summary, rows === null ? [] : Array.isArray(rows) ? rows : [rows as Row], err);
    }
  }

  private failed(summary: CleanupSummary, rows: readonly Row[], err: unknown): void {
    summary.errors += Math.max(1, rows.length);
    const r = rows[0];
    this.log.error('cleanup action failed; the next run retries it', {
      ...(rows.length === 1 && r ? { functionId: r.function_id, deploymentId: r.id, version: num(r.version) } : {}),
      ...(rows.length > 1 ? { versions: rows.length, first: { functionId: r!.function_id, version: num(r!.version) } } : {}),
      err,
    });
  }

  /** The versions of `actions` this driver can clean up, claimed (step 1); the others are reported as errors. */
  private async claimBatch(summary: CleanupSummary, actions: readonly PlannedAction[], rowsById: ReadonlyMap<string, Row>): Promise<Row[]> {
    // Another driver's artifact is invisible to this one: "removing" it would remove nothing and
    // record the image as gone. Leave the version untouched; a cleanup with the right driver does it.
    const ours: Row[] = [];
    for (const action of actions) {
      const r = rowsById.get(action.deploymentId)!;
      const builtBy = versionDriver(r);
      if (builtBy === this.driver.name) {
        ours.push(r);
        continue;
      }
      const why = `version ${r.version} was built by the ${builtBy} driver but this cleanup runs the ${this.driver.name} driver: left as it is (run cleanup with RUNTIME_DRIVER=${builtBy})`;
      this.failed(summary, [r], new Error(why));
    }
    if (ours.length === 0) return [];
    if (this.opts.beforeClaim) {
      const ids = new Set(ours.map((r) => r.id));
      await this.opts.beforeClaim(actions.filter((a) => ids.has(a.deploymentId)));
    }
    let claimed: Row[] = [];
    await this.guard(summary, ours, async () => {
      claimed = await this.claim(summary, ours);
    });
    return claimed;
  }

  /** Steps 2 and 3 for claimed versions. Never throws: a failure is counted and the rows stay `archiving`. */
  private async finishBatch(summary: CleanupSummary, claimed: readonly Row[]): Promise<void> {
    if (claimed.length === 0) return;
    try {
      const outcomes = await this.applyBatch(summary, claimed);
      if (outcomes.length === 0) return;
      await this.guard(summary, outcomes.map((o) => o.row), () => this.recordBatch(summary, outcomes));
    } catch (err) {
      this.failed(summary, claimed, err);
    }
  }

  /**
   * Step 1, for a batch: one transaction that locks the batch's functions, reads the rows and their
   * protections again (the plan's were read before: a tag, a candidate or a rollback since, made
   * under the same lock, must still win) and marks what may go `archiving` in one UPDATE. Rows
   * already `archiving` (a killed run's) are taken as they are.
   */
  private async claim(summary: CleanupSummary, rows: readonly Row[]): Promise<Row[]> {
    const ids = rows.map((r) => r.id);
    const functionIds = [...new Set(rows.map((r) => r.function_id))];
    const keptNow: KeptVersion[] = [];
    const claimed = await withTransaction(this.db, async (trx) => {
      keptNow.length = 0;
      await lockFunctionRows(this.db, trx, functionIds);
      const current: Row[] = await trx('function_deployments as d')
        .join('functions as f', 'f.id', 'd.function_id')
        .whereIn('d.id', ids)
        .select(ROW_COLUMNS);
      const guarded = await protectedDeployments(trx, functionIds);
      const resumed: Row[] = [];
      const taken: Row[] = [];
      for (const c of current) {
        if (c.status === 'archiving') resumed.push(c);
        else if (c.status !== BUILT_STATUS || bool(c.is_active) || c.claimed_by) continue;
        else {
          const reason = guarded.get(c.id);
          if (reason) keptNow.push({ functionId: c.function_id, name: c.name, version: num(c.version), reason });
          else taken.push(c);
        }
      }
      if (taken.length === 0) return resumed;
      // Every writer of a built row holds its function's lock, so all of `taken` is marked; the
      // status condition and RETURNING keep a writer that did not from being overruled.
      const marked: { id: string }[] = await trx('function_deployments')
        .whereIn('id', taken.map((c) => c.id))
        .andWhere('status', BUILT_STATUS)
        .update({ status: 'archiving', updated_at: nowIso() })
        .returning('id');
      const markedIds = new Set(marked.map((m) => m.id));
      return [...resumed, ...taken.filter((c) => markedIds.has(c.id))];
    });
    // in the plan's order (newest first within a function), as the report lists them
    const order = new Map(rows.map((r, i) => [r.id, i]));
    keptNow.sort((a, b) => b.version - a.version);
    summary.kept.push(...keptNow);
    return claimed.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
  }

  /**
   * Step 2, for a batch: the artifacts are removed and the archives moved (or deleted) at the same
   * time, each side effect idempotent. Returns what is to be recorded: the versions for which both
   * succeeded. A version that failed stays `archiving`, and the next run repeats it.
   */
  private async applyBatch(summary: CleanupSummary, claimed: readonly Row[]): Promise<Outcome[]> {
    const errors = new Map<string, unknown>();
    const imageNotes = new Map<string, string>();
    const removals = forEachLimited([...claimed], this.opts.concurrency, async (r) => {
      try {
        await this.driver.removeArtifact({ functionId: r.function_id, version: num(r.version), imageTag: r.image_tag });
        summary.imagesRemoved++;
        imageNotes.set(r.id, r.image_tag ? `image ${r.image_tag} removed` : 'unpacked artifact removed');
      } catch (err) {
        errors.set(r.id, err);
      }
    });
    const [, archives] = await Promise.all([removals, this.moveArchives(summary, claimed, errors)]);
    const outcomes: Outcome[] = [];
    // one log line per error: a failed DeleteObjects is the same error for up to 1,000 versions
    const failedBy = new Map<unknown, Row[]>();
    for (const r of claimed) {
      const err = errors.get(r.id);
      if (err !== undefined) {
        const same = failedBy.get(err);
        if (same) same.push(r);
        else failedBy.set(err, [r]);
        continue;
      }
      const archive = archives.get(r.id)!;
      outcomes.push({ ...archive, row: r, notes: [imageNotes.get(r.id)!, archive.note] });
    }
    for (const [err, rows] of failedBy) this.failed(summary, rows, err);
    return outcomes;
  }

  /** The archive half of step 2, per ARCHIVE_MODE; a version's failure goes into `errors`. */
  private async moveArchives(
    summary: CleanupSummary,
    claimed: readonly Row[],
    errors: Map<string, unknown>,
  ): Promise<Map<string, Omit<Outcome, 'row' | 'notes'> & { note: string }>> {
    const done = new Map<string, Omit<Outcome, 'row' | 'notes'> & { note: string }>();
    const storage = this.p.storage;
    /** Deletes each version's keys in DeleteObjects batches; calls `ok` for the versions all of whose keys went. */
    const deleteKeys = async (items: { row: Row; keys: string[] }[], ok: (row: Row) => void) => {
      if (items.length === 0) return;
      let refused: Map<string, string>;
      try {
        refused = await storage.deleteMany(items.flatMap((i) => i.keys));
      } catch (err) {
        for (const i of items) errors.set(i.row.id, err);
        return;
      }
      for (const { row, keys } of items) {
        const bad = keys.find((k) => refused.has(k));
        if (bad) errors.set(row.id, new Error(`S3 did not delete ${bad}: ${refused.get(bad)}`));
        else ok(row);
      }
    };

    const mode = this.opts.archiveMode;
    if (mode === 'delete') {
      await deleteKeys(
        claimed.map((r) => ({ row: r, keys: r.archive_key ? [r.s3_key, r.archive_key] : [r.s3_key] })),
        (r) => {
          summary.objectsRemoved++;
          summary.bytesFreed += num(r.archive_size);
          done.set(r.id, { status: 'deleted', archiveKey: null, storageClass: null, note: 'archive deleted (ARCHIVE_MODE=delete)' });
        },
      );
    } else if (mode === 'prefix') {
      // Copy first, delete after: a run killed between the two leaves both, never neither.
      const copied: { row: Row; keys: string[] }[] = [];
      await forEachLimited([...claimed], this.opts.concurrency, async (r) => {
        const current = r.archive_key ?? r.s3_key;
        const target = archivePrefixKey(r.s3_key);
        if (current === target) {
          done.set(r.id, { status: 'archived', archiveKey: target, storageClass: r.archive_storage_class, note: `archive moved to ${target}` });
          return;
        }
        try {
          // the original gone and the copy there: a killed run got as far as the delete
          if (!(await storage.copyIfPresent(current, target)) && !(await storage.head(target))) {
            throw new Error(`archive of v${r.version} is missing from ${current}`);
          }
          copied.push({ row: r, keys: [current] });
        } catch (err) {
          errors.set(r.id, err);
        }
      });
      await deleteKeys(copied, (r) => {
        summary.objectsMoved++;
        const target = archivePrefixKey(r.s3_key);
        done.set(r.id, { status: 'archived', archiveKey: target, storageClass: r.archive_storage_class, note: `archive moved to ${target}` });
      });
    } else {
      const storageClass = this.opts.storageClass;
      await forEachLimited([...claimed], this.opts.concurrency, async (r) => {
        const current = r.archive_key ?? r.s3_key;
        try {
          if (r.archive_storage_class !== storageClass) {
            await storage.copy(current, current, { storageClass });
            summary.objectsMoved++;
          }
          done.set(r.id, { status: 'archived', archiveKey: r.archive_key, storageClass, note: `archive kept at ${current} in storage class ${storageClass}` });
        } catch (err) {
          errors.set(r.id, err);
        }
      });
    }
    return done;
  }

  /**
   * Step 3, for a batch: record what is true now, each row its own values, in one UPDATE … FROM
   * (only rows still `archiving`), and the events of the rows it changed in one INSERT.
   */
  private async recordBatch(summary: CleanupSummary, outcomes: readonly Outcome[]): Promise<void> {
    const now = nowIso();
    const values = outcomes.map((o) => ({
      deployment_id: o.row.id,
      new_status: o.status,
      new_archive_key: o.status === 'deleted' ? null : o.archiveKey,
      new_storage_class: o.status === 'deleted' ? null : o.storageClass,
      removed_at: o.status === 'deleted' ? now : null,
      note: o.notes.join('; '),
    }));
    const rows = jsonRowsCte(this.db, 'v', {
      deployment_id: 'uuid',
      new_status: 'text',
      new_archive_key: 'text',
      new_storage_class: 'text',
      removed_at: 'timestamptz',
      note: 'text',
    });
    const recorded = await withTransaction(this.db, async (trx) => {
      // the functions' locks first, as claim() takes them (and a function's deletion)
      await lockFunctionRows(this.db, trx, [...new Set(outcomes.map((o) => o.row.function_id))]);
      const result = await trx.raw(
        `WITH ${rows}
         UPDATE function_deployments
            SET status = v.new_status, archive_key = v.new_archive_key, archive_storage_class = v.new_storage_class,
                archive_removed_at = v.removed_at, image_removed_at = ?, archived_at = ?, cleanup_note = v.note, updated_at = ?
           FROM v
          WHERE function_deployments.id = v.deployment_id AND function_deployments.status = 'archiving'
      RETURNING id`,
        [JSON.stringify(values), now, now, now],
      );
      const changed = new Set<string>((this.db.dialect === 'pg' ? result.rows : result).map((r: { id: string }) => r.id));
      const events: EventInput[] = [];
      for (const o of outcomes) {
        if (!changed.has(o.row.id)) continue;
        events.push({
          functionId: o.row.function_id,
          deploymentId: o.row.id,
          version: num(o.row.version),
          event: o.status === 'deleted' ? 'archive_deleted' : 'archived',
          message: `version ${o.row.version} ${o.status} by retention cleanup: ${o.notes.join('; ')}`,
          at: now,
        });
      }
      await recordEvents(this.db, trx, events);
      return outcomes.filter((o) => changed.has(o.row.id));
    });
    // counted once committed: a failed record leaves the rows `archiving` for the next run
    for (const o of recorded) {
      if (o.status === 'deleted') summary.archivesDeleted++;
      else summary.versionsArchived++;
    }
  }

  /** Old failed versions: delete, then record. Killed in between, the next run deletes again (harmless) and records. */
  private async deleteFailedArchives(summary: CleanupSummary, rows: readonly Row[]): Promise<void> {
    const refused = await this.p.storage.deleteMany(rows.flatMap((r) => (r.archive_key ? [r.s3_key, r.archive_key] : [r.s3_key])));
    const deleted: Row[] = [];
    for (const r of rows) {
      const bad = [r.s3_key, r.archive_key].find((k) => k && refused.has(k));
      if (bad) this.failed(summary, [r], new Error(`S3 did not delete ${bad}: ${refused.get(bad)}`));
      else deleted.push(r);
    }
    if (deleted.length === 0) return;
    const now = nowIso();
    // under the functions' locks, as every writer of several versions: the rows a function's
    // deletion locks are locked in one order (docs/design.md, the usage counts)
    const moved: { id: string }[] = await withTransaction(this.db, async (trx) => {
      await lockFunctionRows(this.db, trx, [...new Set(deleted.map((r) => r.function_id))]);
      return trx('function_deployments')
        .whereIn('id', deleted.map((r) => r.id))
        .andWhere('status', 'failed')
        .whereNull('archive_removed_at')
        .update({ archive_removed_at: now, cleanup_note: 'archive of a failed version deleted by retention cleanup', updated_at: now })
        .returning('id');
    });
    const recorded = new Set(moved.map((m) => m.id));
    for (const r of deleted) {
      if (!recorded.has(r.id)) continue;
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
