// Rollback: make an earlier built version live again, without a rebuild — or, for a version whose
// image retention cleanup removed, restore it: rebuild from its archive and go live when built,
// unless the user activates something else meanwhile.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { pgTransaction } from '../db/pg-direct.ts';
import { sqliteImmediate, type SqliteTx } from '../db/sqlite-direct.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { activateDeploymentInTransaction, awaitsApproval, recordApprovalInTransaction } from './activation.ts';
import { endCanaryInTransaction } from './canary-state.ts';
import { clearCandidateInTransaction } from './traffic.ts';
import { requeueBuild } from './build-queue.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { recordEvent, type FunctionEvent } from './events.ts';
import { announceCommittedLocally, FUNCTION_CHANGED_CHANNEL } from './function-changes.ts';
import { BUILT_STATUS } from './model.ts';
import { liveDeployment, type LiveDeployment } from './live-routes.ts';
import { metricsOf } from '../observability/metrics.ts';

export interface RollbackResult {
  version: number;
  deploymentId: string;
  /** false when the version was already live (a no-op) */
  changed: boolean;
  /** true when the version is being rebuilt from its archive first (answered with 202) */
  restoring: boolean;
}

export interface RollbackOptions {
  /** who asked (the event log names them; it approves a version that waited for approval) */
  actor?: string | null;
  /** who asked, by user id: their email is read with the rest (one statement less than actorOf) */
  actorUserId?: string;
  /** 'approve': the same move, asked for as the approval of a version that waited for it */
  kind?: 'rollback' | 'approve';
}

/**
 * A rollback sends all the traffic to the version: a running canary ends (aborted) and a candidate
 * stops taking traffic, in the same transaction as the switch, so nothing but the version asked
 * for serves once it answers.
 *
 * The switch to a built version is the hot path, and it is a few statements under one lock: the
 * function's row lock (PostgreSQL) or the write lock (SQLite, BEGIN IMMEDIATE), one SELECT that
 * reads everything the decision needs, then the writes, which PostgreSQL gets as one statement.
 * The rule is activation.ts's for a user's intent: the rollback is the newest intent, the old live
 * row goes off before the new one goes on (the one-active partial unique index holds), a version
 * that waited for approval has it now, and the route caches hear of it on commit. A version whose
 * image was removed (archived) goes through the general path below, unchanged.
 */
export async function rollbackToVersion(db: Db, functionId: string, version: number, opts: RollbackOptions = {}): Promise<RollbackResult> {
  const kind = opts.kind ?? 'rollback';
  const { result, fastSwitch } = await rollbackOnce(db, functionId, version, opts);
  const metrics = metricsOf(db);
  metrics?.rollbacks.inc({ kind, outcome: result.restoring ? 'restoring' : result.changed ? 'switched' : 'already_live' });
  // the general path counts its activation in activation.ts; the fast path writes its own switch
  if (fastSwitch && result.changed) metrics?.activations.inc({ reason: kind });
  return result;
}

async function rollbackOnce(
  db: Db,
  functionId: string,
  version: number,
  opts: RollbackOptions,
): Promise<{ result: RollbackResult; fastSwitch: boolean }> {
  const general = (r: RollbackResult) => ({ result: r, fastSwitch: false });
  if (db.dialect === 'sqlite') {
    const fast = await sqliteImmediate(db, (tx) => {
      const state = tx.get<RollbackState>(READ_SQL, version, opts.actorUserId ?? null, functionId);
      const plan = planRollback(state, functionId, version, opts);
      if (plan.kind === 'general') return plan;
      writeSqlite(tx, plan);
      return plan;
    });
    if (fast.kind === 'switch') {
      if (fast.announce) announceCommittedLocally(functionId, { live: fast.live });
      return { result: fast.result, fastSwitch: true };
    }
    return general(await withTransaction(db, (trx) => rollbackInTransaction(db, trx, functionId, version, { ...opts, actor: fast.actor })));
  }
  // Two round trips (pg-direct.ts): BEGIN, the lock and the read in one message, the writes and
  // COMMIT in another. The read is a statement of its own after the lock's: a statement that
  // waited for the lock would still read the other rows as they were before the holder committed.
  // All three are prepared: parsed and planned once per connection (the lock alone: ~15 µs a call
  // in a bare loop, against ~80 µs for its whole message).
  const fast = await pgTransaction(db, async (tx) => {
    const [, [state]] = await tx.run(
      { sql: 'SELECT id FROM functions WHERE id = ? FOR NO KEY UPDATE', bindings: [functionId], prepare: true },
      { sql: READ_SQL, bindings: [version, opts.actorUserId ?? null, functionId], prepare: true },
    );
    const plan = planRollback(state as RollbackState | undefined, functionId, version, opts);
    if (plan.kind === 'general') return plan; // rolled back: the general path reads again under its own lock
    const write = postgresWrite(plan);
    await tx.commit({ ...write, prepare: true });
    return plan;
  });
  if (fast.kind === 'switch') {
    if (fast.announce) announceCommittedLocally(functionId, { live: fast.live });
    return { result: fast.result, fastSwitch: true };
  }
  return general(await withTransaction(db, (trx) => rollbackInTransaction(db, trx, functionId, version, { ...opts, actor: fast.actor })));
}

/** What the decision reads, in one statement (the function's row, the version, the canary, the candidate, the actor). */
interface RollbackState {
  intent_seq: number | string;
  candidate_id: string | null;
  candidate_version: number | string | null;
  canary_id: string | null;
  canary_deployment_id: string | null;
  canary_version: number | string | null;
  actor_email: string | null;
  dep_id: string | null;
  dep_version: number | string | null;
  dep_status: string | null;
  dep_is_active: unknown;
  dep_auto_activate: unknown;
  dep_approved_at: unknown;
  dep_image_tag: string | null;
  dep_runtime_driver: string | null;
  dep_config: string | null;
}

// The same SQL on both databases; `?` placeholders (filled in as literals on PostgreSQL, bound by better-sqlite3 on SQLite).
const READ_SQL = `
SELECT f.intent_seq,
       cand.id AS candidate_id, cand.version AS candidate_version,
       c.id AS canary_id, c.deployment_id AS canary_deployment_id, c.version AS canary_version,
       u.email AS actor_email,
       d.id AS dep_id, d.version AS dep_version, d.status AS dep_status, d.is_active AS dep_is_active,
       d.auto_activate AS dep_auto_activate, d.approved_at AS dep_approved_at,
       d.image_tag AS dep_image_tag, d.runtime_driver AS dep_runtime_driver, d.config AS dep_config
  FROM functions f
  LEFT JOIN function_deployments d ON d.function_id = f.id AND d.version = ?
  LEFT JOIN function_canaries c ON c.function_id = f.id AND c.status = 'running'
  LEFT JOIN function_deployments cand ON cand.id = f.candidate_deployment_id
  LEFT JOIN users u ON u.id = ?
 WHERE f.id = ?`;

interface EventRow {
  deploymentId: string | null;
  version: number | null;
  event: FunctionEvent;
  message: string;
}

interface SwitchPlan {
  kind: 'switch';
  functionId: string;
  deploymentId: string;
  now: string;
  /** the rollback's intent: the function's clock + 1, live from now on */
  intent: number;
  /** false: the version is already live (its intent is still recorded) */
  activate: boolean;
  /** the running canary to end (aborted) */
  canary: { id: string; reason: string } | null;
  /** who approves a version that waited for approval */
  approvedBy: string | null;
  /** the function changed as the serving processes cache it (live version, candidate) */
  announce: boolean;
  /** the version live once it commits, as the routing cache holds it */
  live: LiveDeployment;
  events: EventRow[];
  result: RollbackResult;
}

/** The decision, from what was read under the lock: errors, the writes, or the general path (archived). */
function planRollback(
  state: RollbackState | undefined,
  functionId: string,
  version: number,
  opts: RollbackOptions,
): SwitchPlan | { kind: 'general'; actor: string | null } {
  if (!state) throw errors.functionNotFound();
  const kind = opts.kind ?? 'rollback';
  const actor = opts.actor ?? state.actor_email ?? null;
  if (!state.dep_id) throw errors.versionNotFound(version);
  const status = state.dep_status!;
  if (status === 'archived') return { kind: 'general', actor };
  if (status === 'deleted') throw errors.archiveGone(version);
  if (status === 'archiving') {
    throw errors.conflict(`version ${version} is being archived right now; retry in a moment`, { version, status });
  }
  if (status !== BUILT_STATUS) throw errors.versionNotBuilt(version, status);

  const v = num(state.dep_version);
  const why = `${kind} to version ${version}${actor ? ` by ${actor}` : ''}`;
  const events: EventRow[] = [];
  const canary = state.canary_id ? { id: state.canary_id, reason: why } : null;
  if (canary) {
    events.push({
      deploymentId: state.canary_deployment_id,
      version: num(state.canary_version),
      event: 'canary_aborted',
      message: `canary of version ${state.canary_version} aborted: ${why}`,
    });
  }
  if (state.candidate_id) {
    events.push({
      deploymentId: state.candidate_id,
      version: num(state.candidate_version),
      event: 'traffic_changed',
      message: `candidate version ${state.candidate_version} removed (${why}): the live version takes all the traffic`,
    });
  }
  const approve = awaitsApproval({ auto_activate: state.dep_auto_activate as boolean, approved_at: state.dep_approved_at });
  if (approve) {
    events.push({ deploymentId: state.dep_id, version: v, event: 'approved', message: `version ${v} approved by ${actor ?? 'unknown'} (${kind})` });
  }
  const activate = !bool(state.dep_is_active);
  if (activate) {
    const by = actor ? ` by ${actor}` : '';
    events.push({
      deploymentId: state.dep_id,
      version: v,
      event: kind === 'rollback' ? 'rolled_back' : 'activated',
      message: kind === 'rollback' ? `rolled back to version ${v}${by}` : `version ${v} is now live${by}`,
    });
  }
  return {
    kind: 'switch',
    functionId,
    deploymentId: state.dep_id,
    now: nowIso(),
    intent: num(state.intent_seq) + 1,
    activate,
    canary,
    approvedBy: approve ? (actor ?? 'unknown') : null,
    announce: activate || state.candidate_id !== null,
    live: liveDeployment({
      deployment_id: state.dep_id,
      version: v,
      image_tag: state.dep_image_tag,
      status: BUILT_STATUS,
      runtime_driver: state.dep_runtime_driver,
      config: state.dep_config ?? '{}',
    }),
    events,
    result: { version: v, deploymentId: state.dep_id, changed: activate, restoring: false },
  };
}

const EVENT_COLUMNS = '(function_id, deployment_id, version, event, message, created_at)';
const eventRows = (plan: SwitchPlan) => plan.events.map(() => '(?, ?, ?, ?, ?, ?)').join(', ');
const eventValues = (plan: SwitchPlan) => plan.events.flatMap((e) => [plan.functionId, e.deploymentId, e.version, e.event, e.message, plan.now]);

/** The function row: the rollback's intent is live, and the candidate (if any) is gone. */
function functionUpdateSql(plan: SwitchPlan): { sql: string; bindings: unknown[] } {
  return plan.activate
    ? {
        sql: `UPDATE functions SET active_deployment_id = ?, active_intent_seq = ?, intent_seq = ?, status = 'active', candidate_deployment_id = NULL, candidate_percent = 0, updated_at = ? WHERE id = ?`,
        bindings: [plan.deploymentId, plan.intent, plan.intent, plan.now, plan.functionId],
      }
    : {
        sql: `UPDATE functions SET active_intent_seq = ?, intent_seq = ?, candidate_deployment_id = NULL, candidate_percent = 0, updated_at = ? WHERE id = ?`,
        bindings: [plan.intent, plan.intent, plan.now, plan.functionId],
      };
}

const END_CANARY_SQL = `UPDATE function_canaries SET status = 'aborted', reason = ?, finished_at = ?, updated_at = ? WHERE id = ? AND status = 'running'`;
const APPROVE_SQL = `UPDATE function_deployments SET approved_by = ?, approved_at = ?, updated_at = ? WHERE id = ?`;
const approvalSet = (plan: SwitchPlan) => (plan.approvedBy === null ? '' : ', approved_by = ?, approved_at = ?');
const approvalBindings = (plan: SwitchPlan) => (plan.approvedBy === null ? [] : [plan.approvedBy, plan.now]);

/** SQLite: each write a prepared statement, in the transaction the read was made in. */
function writeSqlite(tx: SqliteTx, plan: SwitchPlan): void {
  if (plan.canary) tx.run(END_CANARY_SQL, plan.canary.reason, plan.now, plan.now, plan.canary.id);
  if (plan.activate) {
    tx.run('UPDATE function_deployments SET is_active = 0, updated_at = ? WHERE function_id = ? AND is_active AND id <> ?', plan.now, plan.functionId, plan.deploymentId);
    tx.run(
      `UPDATE function_deployments SET is_active = 1, activated_at = ?, updated_at = ?${approvalSet(plan)} WHERE id = ?`,
      plan.now, plan.now, ...approvalBindings(plan), plan.deploymentId,
    );
  } else if (plan.approvedBy !== null) {
    tx.run(APPROVE_SQL, plan.approvedBy, plan.now, plan.now, plan.deploymentId);
  }
  const fn = functionUpdateSql(plan);
  tx.run(fn.sql, ...fn.bindings);
  if (plan.events.length > 0) tx.run(`INSERT INTO function_logs ${EVENT_COLUMNS} VALUES ${eventRows(plan)}`, ...eventValues(plan));
}

/**
 * PostgreSQL: every write in one statement. The sub-statements of a WITH run in no set order, so
 * the new live row waits for the old one's switch-off through its condition (a sub-select of
 * `off`, evaluated before any row of it is written): the partial unique index is checked row by
 * row and would refuse the reverse order.
 */
function postgresWrite(plan: SwitchPlan): { sql: string; bindings: unknown[] } {
  const ctes: string[] = [];
  const bindings: unknown[] = [];
  const add = (sql: string, ...values: unknown[]) => {
    ctes.push(sql);
    bindings.push(...values);
  };
  if (plan.canary) add(`canary AS (${END_CANARY_SQL})`, plan.canary.reason, plan.now, plan.now, plan.canary.id);
  if (plan.activate) {
    add(
      'off AS (UPDATE function_deployments SET is_active = false, updated_at = ? WHERE function_id = ? AND is_active AND id <> ? RETURNING id)',
      plan.now, plan.functionId, plan.deploymentId,
    );
    add(
      `live AS (UPDATE function_deployments SET is_active = true, activated_at = ?, updated_at = ?${approvalSet(plan)} WHERE id = ? AND (SELECT count(*) FROM off) >= 0)`,
      plan.now, plan.now, ...approvalBindings(plan), plan.deploymentId,
    );
  } else if (plan.approvedBy !== null) {
    add(`approval AS (${APPROVE_SQL})`, plan.approvedBy, plan.now, plan.now, plan.deploymentId);
  }
  const fn = functionUpdateSql(plan);
  add(`fn AS (${fn.sql})`, ...fn.bindings);
  if (plan.events.length > 0) add(`events AS (INSERT INTO function_logs ${EVENT_COLUMNS} VALUES ${eventRows(plan)})`, ...eventValues(plan));
  const main = plan.announce ? 'SELECT pg_notify(?, ?)' : 'SELECT 1';
  if (plan.announce) bindings.push(FUNCTION_CHANGED_CHANNEL, plan.functionId);
  return { sql: `WITH ${ctes.join(',\n')}\n${main}`, bindings };
}

/**
 * The general path, through the activation rule's own functions: a version restored from its
 * archive (202), and any version whose status changed between the hot path's read and this one.
 */
async function rollbackInTransaction(
  db: Db,
  trx: Knex.Transaction,
  functionId: string,
  version: number,
  opts: RollbackOptions,
): Promise<RollbackResult> {
  const kind = opts.kind ?? 'rollback';
  const actor = opts.actor ?? null;
  // Lock before reading: the decision below must still hold when it is written.
  if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
  const dep = await findDeploymentByVersion(trx, functionId, version);
  if (!dep) throw errors.versionNotFound(version);
  const base = { version: num(dep.version), deploymentId: dep.id };
  const why = `${kind} to version ${version}${actor ? ` by ${actor}` : ''}`;
  const takeAllTraffic = async () => {
    await endCanaryInTransaction(trx, { functionId, status: 'aborted', reason: why });
    await clearCandidateInTransaction(db, trx, { functionId, why });
  };
  if (dep.status === 'archived') {
    await takeAllTraffic();
    // the user asked for it: a version that waited for approval has it now
    await recordApprovalInTransaction(trx, dep, { actor, how: kind });
    // The rollback is the newest intent: the rebuilt version goes live unless a later one wins.
    const fn = await trx('functions').where({ id: functionId }).first('intent_seq');
    const intent = num(fn.intent_seq) + 1;
    await trx('functions').where({ id: functionId }).update({ intent_seq: intent, updated_at: nowIso() });
    await requeueBuild(db, trx, dep.id, { from: 'archived', intentSeq: intent });
    await recordEvent(trx, {
      functionId,
      deploymentId: dep.id,
      version: base.version,
      event: 'restore_requested',
      message: `rollback to archived version ${version}: rebuilding it from its archive`,
    });
    return { ...base, changed: true, restoring: true };
  }
  if (dep.status === 'deleted') throw errors.archiveGone(version);
  if (dep.status === 'archiving') {
    throw errors.conflict(`version ${version} is being archived right now; retry in a moment`, { version, status: dep.status });
  }
  if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(version, dep.status);
  await takeAllTraffic();
  const result = await activateDeploymentInTransaction(db, trx, {
    functionId,
    deploymentId: dep.id,
    reason: { kind, actor },
  });
  return { ...base, changed: result.activated, restoring: false };
}
