// Getting an archive into S3 for a new version: presigned (the client PUTs straight to S3, or to
// the API's upload URL while S3 is embedded, then calls complete) or through the API (multipart,
// streamed to a temporary file first).
import type { Readable } from 'node:stream';
import type { Platform } from '../platform.ts';
import { num, withTransaction } from '../db/dialect.ts';
import { isoAfter, nowIso, toIso } from '../db/time.ts';
import { QuotaError, errors, isAppError } from '../errors.ts';
import { OUTAGE_RETRY_AFTER_SECONDS } from '../outage.ts';
import { VerifyingStream } from '../storage/verifying-stream.ts';
import type { PresignedUpload } from '../storage/s3-storage.ts';
import { readDirect } from '../db/direct-reads.ts';
import { inStatus } from '../db/status-guard.ts';
import { pgTransaction } from '../db/pg-direct.ts';
import { enqueueBuild, enqueueBuildPgStatement } from './build-queue.ts';
import { getDeploymentByVersion } from './deployments.ts';
import { recordEvent } from './events.ts';
import type { DeploymentRow, FunctionRow } from './model.ts';
import { allocateVersion } from './versions.ts';
import type { ConfigPatch, DeployMetadata } from './release-config.ts';
import { accountLockStatement, accountQuotaGuard, accountQuotaRead, checkAccountQuotas, isGuardRefusal, lockAccount, refuseOverQuota, type QuotaAsk } from './quotas.ts';

/** What a deploy may carry besides its code: a configuration patch, metadata for history, whether it goes live. */
export interface ReleaseInput {
  config?: ConfigPatch;
  metadata?: DeployMetadata;
  /** false: build it, and let it wait for approval rather than go live */
  activate?: boolean;
}

export function releaseOptions(p: Platform, input: ReleaseInput) {
  return { config: { patch: input.config, sealer: p.secrets, platform: p.config }, metadata: input.metadata, activate: input.activate };
}

export interface DeployRequested {
  fn: FunctionRow;
  deployment: DeploymentRow;
  isNewFunction: boolean;
}

/**
 * Refuses to allocate anything while S3 does not answer: an upload URL handed out then could not be
 * used, and the version number it took would be a gap for nothing. (Presigning itself never talks
 * to S3, so without this check an outage would go unnoticed here.)
 */
async function requireStorage(p: Platform): Promise<void> {
  try {
    await p.storage.checkReachable();
  } catch (err) {
    p.logger.warn('object storage unreachable; deploy refused', { err: (err as Error).message });
    throw errors.unavailable('object storage is not answering; try again shortly', OUTAGE_RETRY_AFTER_SECONDS);
  }
}


export async function requestPresignedDeploy(
  p: Platform,
  input: { userId: string; name: string; sizeBytes: number; sha256: string } & ReleaseInput,
  ctx: { apiBaseUrl: string },
): Promise<DeployRequested & { upload: PresignedUpload }> {
  const max = p.config.uploads.maxArchiveBytes;
  if (input.sizeBytes > max) throw errors.tooLarge(max, input.sizeBytes);
  await requireStorage(p);
  // whole seconds: what the URL carries (X-Amz-Expires, or `expires`) and what the row says agree.
  // Rounded up, so a URL lives at least UPLOAD_URL_TTL_SECONDS (rounded down, a 1 s TTL left a
  // client anywhere from 0 to 1 s, and an upload sent at once could arrive expired).
  const expiresAt = new Date(Math.ceil(Date.now() / 1000 + p.config.uploads.urlTtlSeconds) * 1000);
  const sha256 = input.sha256.toLowerCase();
  const allocated = await allocateVersion(p.db, {
    userId: input.userId,
    name: input.name,
    status: 'pending_upload',
    declaredSize: input.sizeBytes,
    declaredSha256: sha256,
    uploadExpiresAt: expiresAt.toISOString(),
    quotas: p.config.quotas,
    ...releaseOptions(p, input),
  });
  const dep = allocated.deployment;
  const upload = await p.uploadUrls.issue(
    { deploymentId: dep.id, key: dep.s3_key, sizeBytes: input.sizeBytes, sha256, expiresAt },
    ctx,
  );
  return { ...allocated, upload };
}

export interface CompleteResult {
  deploymentId: string;
  version: number;
  status: string;
}

/**
 * Whether a pending upload is past saving: its URL expired more than `graceSeconds` ago (a PUT
 * that began before the expiry may still be finishing within the grace). A row with no expiry
 * (a multipart deploy interrupted before every row had one) counts from its creation.
 */
export function isUploadExpired(
  dep: Pick<DeploymentRow, 'upload_expires_at' | 'created_at'>,
  graceSeconds: number,
  now = Date.now(),
): boolean {
  const from = toIso(dep.upload_expires_at) ?? toIso(dep.created_at);
  return from !== null && Date.parse(from) + graceSeconds * 1000 < now;
}

/**
 * Moves a pending upload to `failed` and only then, if this call made that move, deletes its
 * object. Everything that gives up on an upload goes through here: a row that another request has
 * meanwhile moved on (to `building`, by complete) keeps the archive its build needs.
 * Killed between the two steps, the object stays behind a failed row, whose archive retention
 * deletes later (delete-failed-archive).
 */
async function failUpload(
  p: Platform,
  dep: DeploymentRow,
  fields: { error: string; event: 'upload_rejected' | 'upload_expired'; message: string; cleanupNote?: string },
): Promise<boolean> {
  const moved = await withTransaction(p.db, async (trx) => {
    const n = await inStatus(trx('function_deployments').where({ id: dep.id }), 'pending_upload')
      .update({
        status: 'failed',
        error: fields.error,
        updated_at: nowIso(),
        ...(fields.cleanupNote ? { cleanup_note: fields.cleanupNote } : {}),
      });
    if (n) {
      await recordEvent(trx, {
        functionId: dep.function_id,
        deploymentId: dep.id,
        version: num(dep.version),
        event: fields.event,
        message: fields.message,
      });
    }
    return n > 0;
  });
  if (!moved) return false;
  await p.storage.delete(dep.s3_key);
  await inStatus(p.db.knex('function_deployments').where({ id: dep.id }), 'failed').update({ archive_removed_at: nowIso() });
  return true;
}

/** Refuses an archive the platform will not build: fails the deployment, then deletes the object. */
export function rejectUpload(p: Platform, dep: DeploymentRow, error: string): Promise<boolean> {
  return failUpload(p, dep, {
    error,
    event: 'upload_rejected',
    message: `upload of version ${dep.version} rejected: ${error}`,
  });
}

/** Gives up on an upload that never completed (retention, or a complete that came too late). */
export function expireUpload(p: Platform, dep: DeploymentRow): Promise<boolean> {
  return failUpload(p, dep, {
    error: 'upload expired',
    event: 'upload_expired',
    message: `version ${dep.version} expired: its upload never completed`,
    cleanupNote: 'upload never completed; expired',
  });
}

/**
 * Queues the build of a verified archive, within the account's quotas (checked under its lock, so
 * concurrent completes cannot both take the last build slot or the last bytes). Over the byte quota
 * the archive is refused for good (403); with every build slot taken it stays pending_upload and the
 * client may complete again later (429, Retry-After). False when another request queued it first.
 *
 * `ownerId`: the function's owner (it never changes), read by the caller beside what it reads
 * anyway: on SQLite a transaction must begin with its write (the account lock), or another
 * process's write makes it fail at once, so it is not read inside.
 */
async function enqueueWithinQuotas(
  p: Platform,
  dep: DeploymentRow,
  ownerId: string | null,
  archive: { size: number; sha256: string },
  message: string,
): Promise<boolean> {
  const quotas = p.config.quotas;
  const ask = { adding: archive.size, bytesFirst: true };
  try {
    if (p.db.dialect === 'pg') return await enqueuePostgres(p, dep, ownerId, archive, ask, message);
    return await withTransaction(p.db, async (trx) => {
      if (ownerId !== null) {
        await lockAccount(p.db, trx, quotas, ownerId);
        await checkAccountQuotas(trx, quotas, ownerId, ask);
      }
      if (!(await enqueueBuild(p.db, trx, dep.id, archive))) return false;
      await recordEvent(trx, { functionId: dep.function_id, deploymentId: dep.id, version: num(dep.version), event: 'upload_completed', message });
      return true;
    });
  } catch (err) {
    if (err instanceof QuotaError && err.details?.limit === 'MAX_ARCHIVE_BYTES_PER_USER') await rejectUpload(p, dep, err.message);
    throw err;
  }
}

/**
 * The same on PostgreSQL (pg-direct.ts), in one round trip instead of seven: BEGIN, the account's
 * lock, a guard that fails (division by zero, nothing written) whenever a quota would refuse
 * (accountQuotaGuard: refuseOverQuota's rule, asked of the same counts), the queue's write with
 * its event and NOTIFY, and COMMIT, in one message. The account's lock is then held for
 * PostgreSQL's work only, not across a round trip to this process: the completes of one account
 * are serialized by it, and at 16 clients they were at ~200 a second with the lock held over two.
 *
 * A guard that fails sends the two-message path, which reads the counts under the lock and lets
 * refuseOverQuota say which quota refuses (or, the counts having changed meanwhile, none).
 */
async function enqueuePostgres(
  p: Platform,
  dep: DeploymentRow,
  ownerId: string | null,
  archive: { size: number; sha256: string },
  ask: QuotaAsk,
  message: string,
): Promise<boolean> {
  const quotas = p.config.quotas;
  const lock = ownerId === null ? null : accountLockStatement(quotas, ownerId);
  const enqueue = { ...enqueueBuildPgStatement({ ...dep, version: num(dep.version) }, archive, { event: 'upload_completed', message }), prepare: true };
  const guard = lock ? accountQuotaGuard(quotas, ownerId!, [ask.adding]) : null;
  try {
    const results = await pgTransaction(p.db, (tx) => tx.commit(...(lock ? [lock] : []), ...(guard ? [{ ...guard, prepare: true }] : []), enqueue));
    return results[results.length - 1]!.length > 0;
  } catch (err) {
    if (!(guard && isGuardRefusal(err))) throw err;
  }
  return pgTransaction(p.db, async (tx) => {
    // any quota read needs a quota on, and so comes with the lock
    const read = accountQuotaRead(quotas, ownerId!, ask);
    const [, counts] = await tx.run(lock!, ...(read ? [{ ...read, prepare: true }] : []));
    if (read) refuseOverQuota(quotas, counts![0] as Record<string, unknown>, ask);
    const [moved] = await tx.commit(enqueue);
    return moved!.length > 0;
  });
}

/**
 * The version and its function's owner (whose quotas the queue checks), in one read: one message
 * on PostgreSQL. Two queries on two pooled connections cost ~1.4 ms there against ~0.5 for one.
 */
async function versionAndOwner(p: Platform, functionId: string, version: number): Promise<[DeploymentRow, string | null]> {
  const [deps, owners] = (await readDirect(p.db, [
    { sql: 'SELECT * FROM function_deployments WHERE function_id = ? AND version = ?', bindings: [functionId, version] },
    { sql: 'SELECT user_id FROM functions WHERE id = ?', bindings: [functionId] },
  ])) as [DeploymentRow[], { user_id: string }[]];
  const dep = deps[0];
  if (!dep) throw errors.versionNotFound(version);
  return [dep, owners[0]?.user_id ?? null];
}

/**
 * The client says its upload is done. S3 is asked what is really there (s3rver, unlike S3, checks
 * neither signature nor size policy), and only a verified archive enters the build queue.
 * Idempotent: a deployment already past pending_upload just reports its status.
 */
export async function completeUpload(p: Platform, functionId: string, version: number): Promise<CompleteResult> {
  const [dep, ownerId] = await versionAndOwner(p, functionId, version);
  const current = (d: DeploymentRow): CompleteResult => ({ deploymentId: d.id, version: num(d.version), status: d.status });
  if (dep.status !== 'pending_upload') return current(dep);
  if (isUploadExpired(dep, p.config.cleanup.uploadGraceSeconds)) {
    await expireUpload(p, dep);
    throw errors.uploadExpired(num(dep.version));
  }

  // One GET: its size is checked as S3 announces it (an archive over the limit is not read), then
  // it streams through the hash.
  const max = p.config.uploads.maxArchiveBytes;
  const object = await p.storage.digest(dep.s3_key, max);
  if (!object) throw errors.uploadMissing(dep.s3_key);
  if (object.sha256 === null || object.size > max) {
    await rejectUpload(p, dep, `archive is ${object.size} bytes, over the limit of ${max} bytes`);
    throw errors.tooLarge(max, object.size);
  }
  const { sha256, size } = object;
  if (dep.declared_sha256 && dep.declared_sha256 !== sha256) {
    await rejectUpload(p, dep, `checksum mismatch: uploaded ${sha256}, declared ${dep.declared_sha256}`);
    throw errors.checksumMismatch(dep.declared_sha256, sha256);
  }
  if (dep.declared_size !== null && num(dep.declared_size) !== size) {
    await rejectUpload(p, dep, `size mismatch: uploaded ${size} bytes, declared ${num(dep.declared_size)}`);
    throw errors.sizeMismatch(num(dep.declared_size), size);
  }
  const queued = await enqueueWithinQuotas(p, dep, ownerId, { size, sha256 }, `archive for version ${dep.version} uploaded (${size} bytes, sha256 ${sha256}); queued for build`);
  // queued here: building, as the queue wrote it; queued by another request first: as it is now
  return queued ? current({ ...dep, status: 'building' }) : current(await getDeploymentByVersion(p.db, functionId, version));
}

/**
 * The multipart path: the API already holds the archive in a temporary file (size checked, hashed
 * while streaming). A version is allocated only now, so a refused upload burns no number.
 */
export async function deployFromFile(
  p: Platform,
  input: { userId: string; name: string; filePath: string; size: number; sha256: string } & ReleaseInput,
): Promise<DeployRequested> {
  await requireStorage(p);
  const allocated = await allocateVersion(p.db, {
    userId: input.userId,
    name: input.name,
    status: 'pending_upload',
    declaredSize: input.size,
    declaredSha256: input.sha256,
    quotas: p.config.quotas,
    // A process killed while storing below leaves this row pending: the expiry lets retention
    // fail it and remove whatever reached S3.
    uploadExpiresAt: isoAfter(p.config.uploads.urlTtlSeconds * 1000),
    ...releaseOptions(p, input),
  });
  const dep = allocated.deployment;
  try {
    await p.storage.putFile(dep.s3_key, input.filePath);
  } catch (err) {
    await rejectUpload(p, dep, `storing the archive failed: ${(err as Error).message}`);
    throw err;
  }
  await enqueueWithinQuotas(p, dep, input.userId, input, `archive for version ${dep.version} received through the API (${input.size} bytes); queued for build`);
  const deployment = await getDeploymentByVersion(p.db, dep.function_id, num(dep.version));
  return { ...allocated, deployment };
}

/**
 * A PUT through an API upload URL (while S3 is embedded): the signature is the credential. Checks
 * come before the body is read; the body then streams into the store through VerifyingStream, so
 * nothing is buffered whole and a wrong body is never stored. Single-use: one PUT at a time claims
 * the deployment (a fenced update); the claim stays once the archive is stored, and is given back
 * when the PUT is refused or interrupted, so the client may try again until the URL expires.
 */
export async function storeRelayedUpload(
  p: Platform,
  input: { deploymentId: string; expires: number; sig: string; contentLength?: number; body: Readable },
): Promise<{ deploymentId: string; version: number; sizeBytes: number; sha256: string }> {
  const relay = p.uploadRelay;
  if (!relay) throw errors.notFound('upload endpoint (uploads go straight to S3 here)');
  const dep = (await p.db.knex('function_deployments').where({ id: input.deploymentId }).first()) as DeploymentRow | undefined;
  const size = dep?.declared_size == null ? null : num(dep.declared_size);
  if (!dep || size === null || !dep.declared_sha256) throw errors.uploadUrlInvalid();
  if (!relay.verify(dep.id, size, dep.declared_sha256, input.expires, input.sig)) throw errors.uploadUrlInvalid();
  if (input.expires * 1000 < Date.now()) throw errors.uploadExpired(num(dep.version));
  if (dep.status !== 'pending_upload') throw errors.uploadUsed();
  const max = p.config.uploads.maxArchiveBytes;
  if (input.contentLength !== undefined && input.contentLength > max) throw errors.tooLarge(max, input.contentLength);
  if (input.contentLength !== undefined && input.contentLength !== size) throw errors.sizeMismatch(size, input.contentLength);

  const claimed = await inStatus(p.db.knex('function_deployments').where({ id: dep.id }), 'pending_upload')
    .whereNull('upload_claimed_at')
    .update({ upload_claimed_at: nowIso(), updated_at: nowIso() });
  if (!claimed) throw errors.uploadUsed();
  // A refused or broken body must abort the PUT: a body stream that errors is only unpiped by the
  // SDK, which would leave the request to S3 open, waiting for the rest.
  const abort = new AbortController();
  let refusal: unknown;
  try {
    const verified = new VerifyingStream(size, dep.declared_sha256);
    verified.on('error', (err) => {
      refusal ??= err;
      abort.abort(err);
    });
    input.body.on('error', (err) => verified.destroy(err));
    await p.storage.putStream(dep.s3_key, input.body.pipe(verified), size, abort.signal);
    if (refusal) throw refusal;
  } catch (err) {
    // This request holds the claim on a pending row: whatever it left in the store is its own.
    await p.storage.delete(dep.s3_key).catch(() => {});
    await inStatus(p.db.knex('function_deployments').where({ id: dep.id }), 'pending_upload')
      .update({ upload_claimed_at: null, updated_at: nowIso() });
    throw isAppError(refusal) ? refusal : err;
  }
  return { deploymentId: dep.id, version: num(dep.version), sizeBytes: size, sha256: dep.declared_sha256 };
}
