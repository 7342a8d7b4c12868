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

type RollbackKind = 'rollback' | 'approve';

export interface RollbackOptions {
  /** who asked (the event log names them; it approves a version that waited for approval) */
  actor?: string | null;
  /** who asked, by user id: their email is read with the rest (one statement less than actorOf) */
  actorUserId?: string;
  /** 'approve': the same move, asked for as the approval of a version that waited for it */
  kind?: RollbackKind;
}

/**
 * A rollback sends all the traffic to the version: a running canary ends (aborted) and a candidate
 * stops taking traffic, in the same transaction as the switch, so nothing but the version asked
 * for serves once it answers.
 *
 * The switch to a built version is the hot path, and it is a few statements under one lock: the
 * function's row lock (PostgreSQL) or the write lock (SQLite, BEGIN IMMEDIATE), one SELECT that
 * reads everything the decision needs, then the writes. PostgreSQL gets the read and the writes of
 * the common switch as one statement, sent with the lock and COMMIT in one round trip.
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
  const switched = (plan: SwitchPlan) => {
    if (plan.announce) announceCommittedLocally(functionId, { live: plan.live, intent: plan.intent });
    return { result: plan.result, fastSwitch: true };
  };
  if (db.dialect === 'sqlite') {
    const fast = await sqliteImmediate(db, (tx) => {
      const state = tx.get<RollbackState>(READ_SQL, version, opts.actorUserId ?? null, functionId);
      const plan = planRollback(state, functionId, version, opts);
      if (plan.kind === 'general') return plan;
      writeSqlite(tx, plan);
      return plan;
    });
    if (fast.kind === 'switch') return switched(fast);
    return general(await withTransaction(db, (trx) => rollbackInTransaction(db, trx, functionId, version, { ...opts, actor: fast.actor })));
  }
  // PostgreSQL: one round trip for the common switch (plainSwitchSql), two for the rest.
  const now = nowIso();
  const [, [read]] = await pgTransaction(db, (tx) =>
    tx.commit(LOCK_STATEMENT(functionId), { ...plainSwitchSql(functionId, version, opts, now), prepare: true }),
  );
  const state = read as (RollbackState & { plain: unknown }) | undefined;
  const plan = planRollback(state, functionId, version, opts, now);
  if (plan.kind === 'general') return general(await withTransaction(db, (trx) => rollbackInTransaction(db, trx, functionId, version, { ...opts, actor: plan.actor })));
  if (bool(state!.plain)) {
    // written: the plan drawn from the same read must be the one the statement's guard allowed
    if (!isPlainSwitch(plan)) throw new Error(`rollback: the one-message switch wrote a plan that is not plain (${JSON.stringify(plan.events.map((e) => e.event))})`);
    return switched(plan);
  }
  // Nothing was written (a canary to end, a candidate to clear, an approval, a version already
  // live): two round trips. BEGIN, the lock and the read in one message, the writes and COMMIT in
  // another. The read is a statement of its own after the lock's: a statement that waited for the
  // lock would still read the other rows as they were before the holder committed.
  // All three are prepared: parsed and planned once per connection (the lock alone: ~15 µs a call
  // in a bare loop, against ~80 µs for its whole message).
  const fast = await pgTransaction(db, async (tx) => {
    const [, [again]] = await tx.run(LOCK_STATEMENT(functionId), { sql: READ_SQL, bindings: [version, opts.actorUserId ?? null, functionId], prepare: true });
    const replan = planRollback(again as RollbackState | undefined, functionId, version, opts);
    if (replan.kind === 'general') return replan; // rolled back: the general path reads again under its own lock
    await tx.commit({ ...postgresWrite(replan), prepare: true });
    return replan;
  });
  if (fast.kind === 'switch') return switched(fast);
  return general(await withTransaction(db, (trx) => rollbackInTransaction(db, trx, functionId, version, { ...opts, actor: fast.actor })));
}

/** The function's row lock (PostgreSQL), a statement of its own before any read it guards. */
const LOCK_STATEMENT = (functionId: string) => ({ sql: 'SELECT id FROM functions WHERE id = ? FOR NO KEY UPDATE', bindings: [functionId], prepare: true });

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
const READ_COLUMNS = `f.intent_seq,
       cand.id AS candidate_id, cand.version AS candidate_version,
       c.id AS canary_id, c.deployment_id AS canary_deployment_id, c.version AS canary_version,
       u.email AS actor_email,
       d.id AS dep_id, d.version AS dep_version, d.status AS dep_status, d.is_active AS dep_is_active,
       d.auto_activate AS dep_auto_activate, d.approved_at AS dep_approved_at,
       d.image_tag AS dep_image_tag, d.runtime_driver AS dep_runtime_driver, d.config AS dep_config`;
const READ_FROM = `FROM functions f
  LEFT JOIN function_deployments d ON d.function_id = f.id AND d.version = ?
  LEFT JOIN function_canaries c ON c.function_id = f.id AND c.status = 'running'
  LEFT JOIN function_deployments cand ON cand.id = f.candidate_deployment_id
  LEFT JOIN users u ON u.id = ?
 WHERE f.id = ?`;
const READ_SQL = `SELECT ${READ_COLUMNS}\n  ${READ_FROM}`;

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
  now = nowIso(),
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
  if (activate) events.push({ deploymentId: state.dep_id, version: v, ...switchEvent(kind, v, actor) });
  return {
    kind: 'switch',
    functionId,
    deploymentId: state.dep_id,
    now,
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

/** The event of the switch itself: which version went live, and who made it live when known. */
function switchEvent(kind: RollbackKind, version: number, actor: string | null): { event: FunctionEvent; message: string } {
  const by = actor ? ` by ${actor}` : '';
  return kind === 'rollback'
    ? { event: 'rolled_back', message: `rolled back to version ${version}${by}` }
    : { event: 'activated', message: `version ${version} is now live${by}` };
}

/**
 * The common switch: a built version goes live, and that is all (no canary to end, no candidate to
 * clear, no approval to record). plainSwitchSql writes it when its guard says so; the guard and
 * this must agree, and rollbackOnce checks that they do.
 */
function isPlainSwitch(plan: SwitchPlan): boolean {
  return plan.activate && plan.canary === null && plan.approvedBy === null && plan.events.length === 1;
}

/**
 * PostgreSQL, after the lock and in the same message: the read, and the plain switch's writes
 * when the read says the switch is plain (the `plain` guard, isPlainSwitch's conditions in SQL).
 * Otherwise it writes nothing and the read alone comes back; planRollback decides from it as from
 * the two-message path's read. The statement's rows: the read, with `plain`.
 *
 * The writes need nothing but the read: the new live row (the switch-off of the old one first,
 * as postgresWrite orders them), the function's row (the intent is the read's + 1, as
 * planRollback's), the event (its message switchEvent's, with the actor's email from the read when
 * the caller did not name one), and the NOTIFY, sent only when the switch is written.
 */
function plainSwitchSql(functionId: string, version: number, opts: RollbackOptions, now: string): { sql: string; bindings: unknown[] } {
  const kind = opts.kind ?? 'rollback';
  const named = switchEvent(kind, version, ACTOR_MARK);
  const [head, tail] = named.message.split(ACTOR_MARK) as [string, string];
  const bindings = [
    version, opts.actorUserId ?? null, functionId, // the read
    now, functionId, // off
    now, now, // live
    now, // fn
    named.event, head, opts.actor ?? null, tail, switchEvent(kind, version, null).message, now, // events
    FUNCTION_CHANGED_CHANNEL,
  ];
  return { sql: PLAIN_SWITCH_SQL, bindings };
}

/** Where the actor's name goes in a message template (no message contains it otherwise). */
const ACTOR_MARK = '\u0000actor\u0000';

const EVENT_COLUMNS = '(function_id, deployment_id, version, event, message, created_at)';
const eventRows = (plan: SwitchPlan) => plan.events.map(() => '(?, ?, ?, ?, ?, ?)').join(', ');
const eventValues = (plan: SwitchPlan) => plan.events.flatMap((e) => [plan.functionId, e.deploymentId, e.version, e.event, e.message, plan.now]);

/** plainSwitchSql's statement (its text is the same for every call: prepared once a connection). */
const PLAIN_SWITCH_SQL = `
WITH s AS (SELECT f.id AS function_id, ${READ_COLUMNS},
       (d.status = '${BUILT_STATUS}' AND NOT d.is_active AND c.id IS NULL AND cand.id IS NULL
        AND (d.auto_activate OR d.approved_at IS NOT NULL)) IS TRUE AS plain
  ${READ_FROM}),
off AS (UPDATE function_deployments SET is_active = false, updated_at = ?
         WHERE function_id = ? AND is_active AND (SELECT plain FROM s) RETURNING id),
live AS (UPDATE function_deployments SET is_active = true, activated_at = ?, updated_at = ?
          WHERE id = (SELECT dep_id FROM s WHERE plain) AND (SELECT count(*) FROM off) >= 0),
fn AS (UPDATE functions SET active_deployment_id = s.dep_id, active_intent_seq = s.intent_seq + 1, intent_seq = s.intent_seq + 1,
              status = 'active', candidate_deployment_id = NULL, candidate_percent = 0, updated_at = ?
         FROM s WHERE functions.id = s.function_id AND s.plain),
events AS (INSERT INTO function_logs ${EVENT_COLUMNS}
           SELECT s.function_id, s.dep_id, s.dep_version, ?::text,
                  COALESCE(?::text || NULLIF(COALESCE(?::text, s.actor_email), '') || ?::text, ?::text), ?::timestamptz
             FROM s WHERE s.plain)
SELECT s.*, CASE WHEN s.plain THEN pg_notify(?, s.function_id::text) END AS notified FROM s`;

/**
 * The function row: the rollback's intent is live, and the candidate (if any) is gone. PLAIN_SWITCH_SQL
 * writes the same row from its read (its `fn`): a change here belongs there too.
 */
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
