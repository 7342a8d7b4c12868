// Getting an archive into S3 for a new version: presigned (the client PUTs straight to S3, then
// calls complete) or through the API (multipart, streamed to a temporary file first).
import type { Platform } from '../platform.ts';
import { num, withTransaction } from '../db/dialect.ts';
import { isoAfter, nowIso } from '../db/time.ts';
import { QuotaError, errors } from '../errors.ts';
import type { PresignedUpload } from '../storage/s3-storage.ts';
import { enqueueBuild } from './build-queue.ts';
import { getDeploymentByVersion } from './deployments.ts';
import { recordEvent } from './events.ts';
import type { DeploymentRow, FunctionRow } from './model.ts';
import { allocateVersion } from './versions.ts';
import { checkArchiveBytes, checkBuildSlot, lockAccount } from './quotas.ts';

export interface DeployRequested {
  fn: FunctionRow;
  deployment: DeploymentRow;
  isNewFunction: boolean;
}

export async function requestPresignedDeploy(
  p: Platform,
  input: { userId: string; name: string; sizeBytes?: number; sha256?: string },
): Promise<DeployRequested & { upload: PresignedUpload }> {
  const max = p.config.uploads.maxArchiveBytes;
  if (input.sizeBytes !== undefined && input.sizeBytes > max) throw errors.tooLarge(max, input.sizeBytes);
  const ttl = p.config.uploads.urlTtlSeconds;
  const allocated = await allocateVersion(p.db, {
    userId: input.userId,
    name: input.name,
    status: 'pending_upload',
    declaredSize: input.sizeBytes,
    declaredSha256: input.sha256?.toLowerCase(),
    uploadExpiresAt: isoAfter(ttl * 1000),
    quotas: p.config.quotas,
  });
  const upload = await p.storage.presignPut(allocated.deployment.s3_key, {
    expiresInSeconds: ttl,
    contentLength: input.sizeBytes,
  });
  return { ...allocated, upload };
}

export interface CompleteResult {
  deploymentId: string;
  version: number;
  status: string;
}

/** Refuses an archive the platform will not build, deleting it and failing the deployment. */
async function rejectUpload(p: Platform, dep: DeploymentRow, error: string): Promise<void> {
  await withTransaction(p.db, async (trx) => {
    const moved = await trx('function_deployments')
      .where({ id: dep.id, status: 'pending_upload' })
      .update({ status: 'failed', error, updated_at: nowIso() });
    if (moved) {
      await recordEvent(trx, {
        functionId: dep.function_id,
        deploymentId: dep.id,
        version: num(dep.version),
        event: 'upload_rejected',
        message: `upload of version ${dep.version} rejected: ${error}`,
      });
    }
  });
  await p.storage.delete(dep.s3_key);
}

/**
 * Queues the build of a verified archive, within the account's quotas (checked under its lock, so
 * concurrent completes cannot both take the last build slot or the last bytes). Over the byte quota
 * the archive is refused for good (403); with every build slot taken it stays pending_upload and the
 * client may complete again later (429, Retry-After).
 */
async function enqueueWithinQuotas(p: Platform, dep: DeploymentRow, archive: { size: number; sha256: string }, message: string): Promise<void> {
  const quotas = p.config.quotas;
  try {
    // The owner is read before the transaction (it never changes): on SQLite a transaction must
    // begin with its write (the account lock), or another process's write makes it fail at once.
    const fn = await p.db.knex('functions').where({ id: dep.function_id }).first('user_id');
    await withTransaction(p.db, async (trx) => {
      if (fn) {
        await lockAccount(p.db, trx, quotas, fn.user_id);
        await checkArchiveBytes(trx, quotas, fn.user_id, archive.size);
        await checkBuildSlot(trx, quotas, fn.user_id);
      }
      if (await enqueueBuild(p.db, trx, dep.id, archive)) {
        await recordEvent(trx, { functionId: dep.function_id, deploymentId: dep.id, version: num(dep.version), event: 'upload_completed', message });
      }
    });
  } catch (err) {
    if (err instanceof QuotaError && err.details?.limit === 'MAX_ARCHIVE_BYTES_PER_USER') await rejectUpload(p, dep, err.message);
    throw err;
  }
}

/**
 * The client says its upload is done. S3 is asked what is really there (s3rver, unlike S3, checks
 * neither signature nor size policy), and only a verified archive enters the build queue.
 * Idempotent: a deployment already past pending_upload just reports its status.
 */
export async function completeUpload(p: Platform, functionId: string, version: number): Promise<CompleteResult> {
  const dep = await getDeploymentByVersion(p.db, functionId, version);
  const current = (d: DeploymentRow): CompleteResult => ({ deploymentId: d.id, version: num(d.version), status: d.status });
  if (dep.status !== 'pending_upload') return current(dep);

  const info = await p.storage.head(dep.s3_key);
  if (!info) throw errors.uploadMissing(dep.s3_key);
  const max = p.config.uploads.maxArchiveBytes;
  if (info.size > max) {
    await rejectUpload(p, dep, `archive is ${info.size} bytes, over the limit of ${max} bytes`);
    throw errors.tooLarge(max, info.size);
  }
  const { sha256, size } = await p.storage.sha256(dep.s3_key);
  if (dep.declared_sha256 && dep.declared_sha256 !== sha256) {
    await rejectUpload(p, dep, `checksum mismatch: uploaded ${sha256}, declared ${dep.declared_sha256}`);
    throw errors.checksumMismatch(dep.declared_sha256, sha256);
  }
  if (dep.declared_size !== null && num(dep.declared_size) !== size) {
    await rejectUpload(p, dep, `size mismatch: uploaded ${size} bytes, declared ${num(dep.declared_size)}`);
    throw errors.sizeMismatch(num(dep.declared_size), size);
  }
  await enqueueWithinQuotas(p, dep, { size, sha256 }, `archive for version ${dep.version} uploaded (${size} bytes, sha256 ${sha256}); queued for build`);
  return current(await getDeploymentByVersion(p.db, functionId, version));
}

/**
 * The multipart path: the API already holds the archive in a temporary file (size checked, hashed
 * while streaming). A version is allocated only now, so a refused upload burns no number.
 */
export async function deployFromFile(
  p: Platform,
  input: { userId: string; name: string; filePath: string; size: number; sha256: string },
): Promise<DeployRequested> {
  const allocated = await allocateVersion(p.db, {
    userId: input.userId,
    name: input.name,
    status: 'pending_upload',
    declaredSize: input.size,
    declaredSha256: input.sha256,
    quotas: p.config.quotas,
  });
  const dep = allocated.deployment;
  try {
    await p.storage.putFile(dep.s3_key, input.filePath);
  } catch (err) {
    await rejectUpload(p, dep, `storing the archive failed: ${(err as Error).message}`);
    throw err;
  }
  await enqueueWithinQuotas(p, dep, input, `archive for version ${dep.version} received through the API (${input.size} bytes); queued for build`);
  const deployment = await getDeploymentByVersion(p.db, dep.function_id, num(dep.version));
  return { ...allocated, deployment };
}
