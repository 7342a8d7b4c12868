// Invocation: run the live version (or an explicitly named built one) and record what it printed.
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { bool, num } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';
import { AppError, errors } from '../errors.ts';
import type { Platform } from '../platform.ts';
import { ArtifactMissingError } from '../runtime/protocol.ts';
import type { RuntimeDriver } from '../runtime/types.ts';
import { requestRebuild } from './build-queue.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { BUILT_STATUS, type DeploymentRow } from './model.ts';

export interface InvocationResult {
  result: unknown;
  version: number;
  deploymentId: string;
  requestId: string;
  durationMs: number;
}

/** Logs kept per invocation; the rest of a chatty function's output is dropped from the front. */
const STORED_LOG_BYTES = 16 * 1024;

function tail(text: string, max: number): string {
  const buf = Buffer.from(text);
  return buf.length <= max ? text : `[… ${buf.length - max} bytes dropped …]\n` + buf.subarray(buf.length - max).toString();
}

function imageRebuilding(dep: DeploymentRow): AppError {
  return new AppError(
    'image_rebuilding',
    `the image of version ${dep.version} is missing and is being rebuilt from its archive; retry shortly`,
    { version: num(dep.version), deploymentId: dep.id },
  );
}

async function resolveTarget(db: Db, functionId: string, version?: number): Promise<DeploymentRow> {
  if (version !== undefined) {
    const dep = await findDeploymentByVersion(db.knex, functionId, version);
    if (!dep) throw errors.versionNotFound(version);
    if (dep.status === 'building' && dep.image_removed_at) throw imageRebuilding(dep);
    if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(version, dep.status);
    return dep;
  }
  // The seed's execution query: the function's active deployment, checked on both sides.
  const dep = await db
    .knex('functions as f')
    .join('function_deployments as d', 'd.id', 'f.active_deployment_id')
    .where({ 'f.id': functionId })
    .first('d.*');
  if (!dep || !bool(dep.is_active)) throw errors.noActiveDeployment();
  if (dep.status === 'building') throw imageRebuilding(dep);
  return dep;
}

export async function invokeFunction(
  p: Platform,
  driver: RuntimeDriver,
  input: { functionId: string; version?: number; event: unknown },
): Promise<InvocationResult> {
  const dep = await resolveTarget(p.db, input.functionId, input.version);
  const requestId = randomUUID();
  let outcome;
  try {
    outcome = await driver.invoke({
      functionId: input.functionId,
      deploymentId: dep.id,
      version: num(dep.version),
      imageTag: dep.image_tag,
      requestId,
      event: input.event,
      timeoutMs: p.config.runtime.timeoutMs,
    });
  } catch (err) {
    if (!(err instanceof ArtifactMissingError)) throw err;
    // Removed by hand (or lost with a node): rebuild it from its archive; callers retry.
    p.logger.warn('artifact missing at invocation; rebuilding', { functionId: input.functionId, version: dep.version, err });
    await requestRebuild(p.db, { functionId: input.functionId, deploymentId: dep.id, version: num(dep.version), why: err.message });
    throw imageRebuilding(dep);
  }
  await p.db.knex('function_invocations').insert({
    function_id: input.functionId,
    deployment_id: dep.id,
    version: num(dep.version),
    request_id: requestId,
    outcome: outcome.ok ? 'ok' : outcome.kind,
    duration_ms: Math.round(outcome.durationMs),
    logs: tail(outcome.logs, STORED_LOG_BYTES),
    error: outcome.ok ? null : outcome.message.slice(0, 4000),
    created_at: nowIso(),
  });
  const details = { version: num(dep.version), deploymentId: dep.id, requestId };
  if (!outcome.ok && outcome.kind === 'timeout') {
    throw new AppError('function_timeout', `function did not finish within ${p.config.runtime.timeoutMs} ms`, details);
  }
  if (!outcome.ok) throw new AppError('function_error', outcome.message, details);
  return { result: outcome.result, ...details, durationMs: Math.round(outcome.durationMs) };
}

export interface InvocationView {
  id: number;
  requestId: string;
  version: number;
  deploymentId: string;
  outcome: string;
  durationMs: number;
  logs: string | null;
  error: string | null;
  createdAt: string | null;
}

export async function listInvocations(
  db: Db,
  functionId: string,
  opts: { limit: number; version?: number },
): Promise<InvocationView[]> {
  const q = db.knex('function_invocations').where({ function_id: functionId });
  if (opts.version !== undefined) q.andWhere({ version: opts.version });
  const rows = await q.orderBy('id', 'desc').limit(opts.limit);
  return rows.map((r) => ({
    id: num(r.id),
    requestId: r.request_id,
    version: num(r.version),
    deploymentId: r.deployment_id,
    outcome: r.outcome,
    durationMs: num(r.duration_ms),
    logs: r.logs ?? null,
    error: r.error ?? null,
    createdAt: toIso(r.created_at),
  }));
}
