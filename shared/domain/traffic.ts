// Traffic between versions: the live version (exactly one, the seed's invariant) and at most one
// candidate that takes a share of the requests, both running at once. This is blue-green and A/B
// by hand (PUT/DELETE …/traffic, POST …/promote) and the mechanism a canary drives
// (runner/canary-controller.ts). Which version a given request lands on is traffic-choice.ts.
//
// Every change here runs under the function's row lock, announces the change (so every serving
// process drops its cached route at once) and writes the event log.
import type { Knex } from 'knex';
import { z } from 'zod';
import type { Db } from '../db/knex.ts';
import { bool, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { activateDeploymentInTransaction, recordApprovalInTransaction } from './activation.ts';
import { endCanaryInTransaction, runningCanary } from './canary-state.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { recordEvent } from './events.ts';
import { announceFunctionChanged } from './function-changes.ts';
import { BUILT_STATUS, type DeploymentRow, type FunctionRow } from './model.ts';

const version = z.number().int('must be an integer').positive('must be a positive integer');
export const percentSchema = z.number().int('must be a whole number of percent').min(0, 'must be 0–100').max(100, 'must be 0–100');

export const trafficSchema = z.strictObject({
  candidate: z.strictObject({ version, percent: percentSchema }),
  /** the same traffic key (X-Traffic-Key, or the cp_traffic cookie) always lands on the same version */
  sticky: z.boolean().optional(),
});
export type TrafficInput = z.infer<typeof trafficSchema>;

export interface TrafficShare {
  version: number;
  deploymentId: string;
  percent: number;
  role: 'live' | 'candidate';
}

/** Who did it, as the event log names them. */
export async function actorOf(q: Knex | Knex.Transaction, userId: string): Promise<string | null> {
  const row = await q('users').where({ id: userId }).first('email');
  return row?.email ?? null;
}

async function lockedFunction(db: Db, trx: Knex.Transaction, functionId: string): Promise<FunctionRow> {
  if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
  return (await trx('functions').where({ id: functionId }).first()) as FunctionRow;
}

/** A version that can take traffic: it exists and is built. */
export async function builtVersion(trx: Knex.Transaction, functionId: string, v: number): Promise<DeploymentRow> {
  const dep = await findDeploymentByVersion(trx, functionId, v);
  if (!dep) throw errors.versionNotFound(v);
  if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(v, dep.status);
  return dep;
}

/**
 * Makes version `version` the candidate with `percent` of the traffic. `by: 'user'` is refused
 * while a canary runs (the canary owns the split); the canary itself sets it with `by: 'canary'`.
 */
export async function setCandidateInTransaction(
  db: Db,
  trx: Knex.Transaction,
  input: { functionId: string; version: number; percent: number; sticky?: boolean; actor: string | null; by: 'user' | 'canary' },
): Promise<void> {
  const fn = await lockedFunction(db, trx, input.functionId);
  if (input.by === 'user') {
    const canary = await runningCanary(trx, fn.id);
    if (canary) throw errors.canaryRunning(num(canary.version));
  }
  if (!fn.active_deployment_id) throw errors.noActiveDeployment();
  const dep = await builtVersion(trx, fn.id, input.version);
  if (dep.id === fn.active_deployment_id || bool(dep.is_active)) {
    throw errors.conflict(`version ${input.version} is the live version: a candidate is another version`, { version: input.version });
  }
  const sticky = input.sticky ?? bool(fn.traffic_sticky);
  await trx('functions').where({ id: fn.id }).update({
    candidate_deployment_id: dep.id,
    candidate_percent: input.percent,
    traffic_sticky: sticky,
    updated_at: nowIso(),
  });
  await recordApprovalInTransaction(trx, dep, { actor: input.actor, how: input.by === 'canary' ? 'canary' : 'traffic split' });
  await announceFunctionChanged(db, trx, fn.id);
  const live = await trx('function_deployments').where({ id: fn.active_deployment_id }).first('version');
  await recordEvent(trx, {
    functionId: fn.id,
    deploymentId: dep.id,
    version: num(dep.version),
    event: 'traffic_changed',
    message:
      `candidate version ${dep.version} takes ${input.percent}%, live version ${live?.version} ${100 - input.percent}%` +
      `${sticky ? ' (sticky)' : ''}${input.by === 'canary' ? ' (canary)' : input.actor ? ` (by ${input.actor})` : ''}`,
  });
}

/** Removes the candidate: the live version takes all the traffic again. */
export async function clearCandidateInTransaction(
  db: Db,
  trx: Knex.Transaction,
  input: { functionId: string; why: string },
): Promise<{ cleared: boolean }> {
  const fn = await lockedFunction(db, trx, input.functionId);
  if (!fn.candidate_deployment_id) return { cleared: false };
  const dep = await trx('function_deployments').where({ id: fn.candidate_deployment_id }).first('id', 'version');
  await trx('functions').where({ id: fn.id }).update({ candidate_deployment_id: null, candidate_percent: 0, updated_at: nowIso() });
  await announceFunctionChanged(db, trx, fn.id);
  await recordEvent(trx, {
    functionId: fn.id,
    deploymentId: dep?.id ?? null,
    version: dep ? num(dep.version) : null,
    event: 'traffic_changed',
    message: `candidate version ${dep?.version ?? '?'} removed (${input.why}): the live version takes all the traffic`,
  });
  return { cleared: true };
}

/**
 * The candidate becomes the live version and the split ends, in one transaction: the activation
 * rule switches the live row (one live version at every statement), then the candidate is cleared.
 * A promotion by hand during a canary ends the canary (`promoted`).
 */
export async function promoteInTransaction(
  db: Db,
  trx: Knex.Transaction,
  input: { functionId: string; actor: string | null; by: 'user' | 'canary' },
): Promise<{ version: number; deploymentId: string; previousVersion: number | null }> {
  const fn = await lockedFunction(db, trx, input.functionId);
  if (!fn.candidate_deployment_id) throw errors.noCandidate();
  if (input.by === 'user') {
    await endCanaryInTransaction(trx, { functionId: fn.id, status: 'promoted', reason: `promoted by hand${input.actor ? ` by ${input.actor}` : ''}` });
  }
  const previous = fn.active_deployment_id
    ? await trx('function_deployments').where({ id: fn.active_deployment_id }).first('version')
    : undefined;
  const candidate = (await trx('function_deployments').where({ id: fn.candidate_deployment_id }).first()) as DeploymentRow;
  await activateDeploymentInTransaction(db, trx, {
    functionId: fn.id,
    deploymentId: candidate.id,
    reason: { kind: 'promote', actor: input.by === 'canary' ? 'the canary' : input.actor },
  });
  await trx('functions').where({ id: fn.id }).update({ candidate_deployment_id: null, candidate_percent: 0, updated_at: nowIso() });
  return { version: num(candidate.version), deploymentId: candidate.id, previousVersion: previous ? num(previous.version) : null };
}

// ------------------------------------------------------------------ what the API calls

export function setTraffic(db: Db, functionId: string, input: TrafficInput, actor: string | null): Promise<void> {
  return withTransaction(db, (trx) =>
    setCandidateInTransaction(db, trx, { functionId, ...input.candidate, sticky: input.sticky, actor, by: 'user' }),
  );
}

export function clearTraffic(db: Db, functionId: string, actor: string | null): Promise<{ cleared: boolean }> {
  return withTransaction(db, async (trx) => {
    const canary = await runningCanary(trx, functionId);
    if (canary) throw errors.canaryRunning(num(canary.version));
    return clearCandidateInTransaction(db, trx, { functionId, why: actor ? `by ${actor}` : 'by hand' });
  });
}

export function promote(db: Db, functionId: string, actor: string | null) {
  return withTransaction(db, (trx) => promoteInTransaction(db, trx, { functionId, actor, by: 'user' }));
}

/** The function's split as its JSON shows it: the live version, and the candidate when there is one. */
export function trafficShares(
  live: { version: number; deploymentId: string } | null,
  candidate: { version: number; deploymentId: string; percent: number } | null,
): TrafficShare[] {
  const shares: TrafficShare[] = [];
  const candidatePercent = live && candidate ? candidate.percent : 0;
  if (live) shares.push({ ...live, percent: 100 - candidatePercent, role: 'live' });
  if (live && candidate) shares.push({ ...candidate, role: 'candidate' });
  return shares;
}
