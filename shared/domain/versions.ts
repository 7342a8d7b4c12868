// Version allocation: the next integer per function, taken under the function's row lock in the
// same transaction that records the deployment, so concurrent deploys never share or reuse a number
// (the original's unlocked MAX(version)+1 did).
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, num, withTransaction } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { recordEvent } from './events.ts';
import { announceQueued } from './build-queue.ts';
import { checkAccountQuotas, lockAccount, type Quotas } from './quotas.ts';
import { archiveKey, type DeploymentRow, type DeploymentStatus, type FunctionRow } from './model.ts';
import type { Config } from '../config.ts';
import { applyConfigPatch, checkConfig, parseStoredConfig, type ConfigPatch, type DeployMetadata, type SecretSealer } from './release-config.ts';
import { currentRequestId } from '../observability/request-context.ts';

export interface AllocatedDeployment {
  fn: FunctionRow;
  deployment: DeploymentRow;
  isNewFunction: boolean;
}

export interface AllocateInput {
  userId: string;
  name: string;
  status: Extract<DeploymentStatus, 'pending_upload' | 'building'>;
  declaredSize?: number;
  declaredSha256?: string;
  /** for an archive already in hand (multipart upload) */
  archive?: { size: number; sha256: string };
  uploadExpiresAt?: string;
  /**
   * The account's quotas, checked in the allocating transaction (a refusal rolls it back: no
   * version number is spent): a new function, a build slot, and room for `declaredSize` bytes.
   */
  quotas?: Quotas;
  /**
   * The version's configuration: the latest version's, with `patch` applied (checked before the
   * version is made: a bad one spends no number).
   */
  config?: { patch?: ConfigPatch; sealer: SecretSealer; platform: Config };
  metadata?: DeployMetadata;
  /**
   * false: the build does not make it live; it waits for approval (so does every version of a
   * function with requireApproval).
   */
  activate?: boolean;
  /**
   * A configuration change rather than a deploy: the new version reuses the code (artifact and
   * archive) of the function's live version. Fails with no_active_deployment when none is live.
   */
  fromLive?: boolean;
}

export async function allocateVersion(db: Db, input: AllocateInput): Promise<AllocatedDeployment> {
  // A concurrent DELETE of the function can remove the row between our insert and update; the
  // insert then succeeds on the next attempt.
  for (let attempt = 0; attempt < 3; attempt++) {
    const result = await withTransaction(db, (trx) => allocateInTransaction(db, trx, input));
    if (result) return result;
  }
  throw new Error(`could not allocate a version for ${input.name}: function kept disappearing`);
}

async function allocateInTransaction(db: Db, trx: Knex.Transaction, input: AllocateInput): Promise<AllocatedDeployment | null> {
  if (input.quotas) {
    // the account's lock first (before the function's): concurrent deploys count one at a time
    await lockAccount(db, trx, input.quotas, input.userId);
    await checkAccountQuotas(trx, input.quotas, input.userId, { newFunctionName: input.name, adding: input.declaredSize ?? 0 });
  }
  const now = nowIso();
  const candidateId = randomUUID();
  // ON CONFLICT DO NOTHING: 50 concurrent first deploys create exactly one function.
  await trx('functions')
    .insert({
      id: candidateId,
      user_id: input.userId,
      name: input.name,
      status: 'pending',
      last_version: 0,
      intent_seq: 0,
      active_intent_seq: 0,
      created_at: now,
      updated_at: now,
    })
    .onConflict(['user_id', 'name'])
    .ignore();
  // The increment is the lock: PostgreSQL row-locks it until commit, SQLite holds its write lock.
  // RETURNING: the row as incremented, without a second statement under the lock.
  const [fn] = (await trx('functions')
    .where({ user_id: input.userId, name: input.name })
    .update({
      last_version: trx.raw('last_version + 1'),
      intent_seq: trx.raw('intent_seq + 1'),
      updated_at: now,
    })
    .returning('*')) as FunctionRow[];
  if (!fn) return null;
  const version = num(fn.last_version);
  // the configuration: the latest version's (whatever its status: it is the owner's latest word)
  const latest = await trx('function_deployments').where({ function_id: fn.id }).orderBy('version', 'desc').first('config');
  let stored = parseStoredConfig(latest?.config);
  if (input.config?.patch) stored = applyConfigPatch(stored, input.config.patch, { functionId: fn.id, sealer: input.config.sealer });
  if (input.config) checkConfig(stored, input.config.platform);
  let base: DeploymentRow | undefined;
  if (input.fromLive) {
    base = fn.active_deployment_id ? await trx('function_deployments').where({ id: fn.active_deployment_id, is_active: true }).first() : undefined;
    if (!base) throw errors.noActiveDeployment();
  }
  const deployment = {
    id: randomUUID(),
    function_id: fn.id,
    version,
    image_tag: null,
    s3_key: archiveKey(fn.id, version),
    status: input.status,
    is_active: false,
    declared_size: input.declaredSize ?? base?.archive_size ?? null,
    declared_sha256: input.declaredSha256 ?? base?.archive_sha256 ?? null,
    archive_size: input.archive?.size ?? base?.archive_size ?? null,
    archive_sha256: input.archive?.sha256 ?? base?.archive_sha256 ?? null,
    config: JSON.stringify(stored),
    source: base ? 'config' : 'deploy',
    metadata: input.metadata && Object.keys(input.metadata).length > 0 ? JSON.stringify(input.metadata) : null,
    base_deployment_id: base?.id ?? null,
    auto_activate: input.activate !== false && !bool(fn.require_approval),
    intent_seq: num(fn.intent_seq),
    attempts: 0,
    upload_expires_at: input.uploadExpiresAt ?? null,
    queued_at: input.status === 'building' ? now : null,
    // its build logs with the id of the request that asked for it
    request_id: currentRequestId() ?? null,
    created_at: now,
    updated_at: now,
  };
  const [row] = (await trx('function_deployments').insert(deployment).returning('*')) as DeploymentRow[];
  if (input.status === 'building') await announceQueued(db, trx);
  await recordEvent(trx, {
    functionId: fn.id,
    deploymentId: deployment.id,
    version,
    event: 'deploy_requested',
    message:
      (base ? `configuration change requested: version ${version} runs version ${num(base.version)}'s code` : `deploy of version ${version} requested`) +
      (deployment.auto_activate ? '' : '; it will wait for approval'),
  });
  return { fn, deployment: row, isNewFunction: fn.id === candidateId };
}
