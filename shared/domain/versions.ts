// Version allocation: the next integer per function, taken under the function's row lock in the
// same transaction that records the deployment, so concurrent deploys never share or reuse a number
// (the original's unlocked MAX(version)+1 did).
import { AsyncResource } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { bool, num } from '../db/dialect.ts';
import { DatabaseError } from 'pg';
import { pgTransaction, type PgStatement, type PgTx } from '../db/pg-direct.ts';
import { isDatabaseUnavailable } from '../db/errors.ts';
import { TurnBatcher, type Outcome } from '../db/turn-batch.ts';
import { sqliteGroupImmediate, type SqliteTx } from '../db/sqlite-direct.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { announceQueuedCommittedLocally, BUILD_QUEUED_CHANNEL, UNATTEMPTED } from './build-queue.ts';
import { accountLockStatement, accountQuotaGuard, accountQuotaRead, refuseOverQuota, type QuotaAsk, type Quotas } from './quotas.ts';
import { archiveKey, type DeploymentRow, type DeploymentStatus, type FunctionRow } from './model.ts';
import type { Config } from '../config.ts';
import { applyConfigPatch, checkConfig, parseStoredConfig, type ConfigPatch, type DeployMetadata, type SecretSealer } from './release-config.ts';
import { currentRequestId } from '../observability/request-context.ts';
import { metricsOf } from '../observability/metrics.ts';
import { functionSnapshots, type FunctionSnapshot } from './function-snapshots.ts';

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

/**
 * Allocates the function's next version and records its deployment, in one transaction under the
 * function's row lock (and the account's, when it adds to a count a quota binds here). Both databases run the same
 * steps (the same SQL where they agree): the quota counts, the function upserted with its version
 * incremented, the latest version's configuration, the deployment and its event. A refusal (a
 * quota, a bad configuration) throws before the commit, so no version number is spent.
 *
 * SQLite runs them synchronously (through knex each statement is a promise round trip through the
 * pool, several times the statement itself, and this is the deploy's hot path), and the
 * allocations asked for in one turn of the event loop commit together, each in a savepoint of its
 * own (sqliteGroupImmediate): a refused one spends no number, the others commit.
 * PostgreSQL gets them in two round trips (allocatePostgres), and a deploy of an existing function
 * takes that function's lock only, not the account's; the plain deploys of existing functions
 * asked for while the previous group commits share one transaction (allocateGroupPostgres): one
 * round trip when this process wrote their functions last, two otherwise.
 */
export async function allocateVersion(db: Db, input: AllocateInput): Promise<AllocatedDeployment> {
  if (db.dialect === 'sqlite') {
    const allocated = await sqliteGroupImmediate(db, (tx) => allocateSqlite(tx, input));
    if (input.status === 'building') announceQueuedCommittedLocally();
    return allocated;
  }
  return allocatePostgres(db, input);
}

/**
 * One statement creates the function (its first version is 1) or increments its version: the
 * increment is the function's lock (PostgreSQL row-locks it until commit; SQLite holds its write
 * lock), and there is no moment between an insert and an update in which a concurrent DELETE of
 * the function could leave nothing to increment. Concurrent first deploys create exactly one
 * function (the unique (user_id, name)). RETURNING: the row as incremented, without a second
 * statement under the lock.
 */
const UPSERT_FUNCTION_SQL = `INSERT INTO functions (id, user_id, name, status, last_version, intent_seq, active_intent_seq, created_at, updated_at)
VALUES (?, ?, ?, 'pending', 1, 1, 0, ?, ?)
ON CONFLICT (user_id, name) DO UPDATE SET last_version = functions.last_version + 1, intent_seq = functions.intent_seq + 1, updated_at = excluded.updated_at
RETURNING *`;

/** A deploy of an existing function: the same increment, taking the function's row lock; no row when there is no such function. */
const INCREMENT_FUNCTION_SQL = `UPDATE functions SET last_version = last_version + 1, intent_seq = intent_seq + 1, updated_at = ?
WHERE user_id = ? AND name = ? RETURNING *`;

/** the configuration: the latest version's (whatever its status: it is the owner's latest word) */
const LATEST_CONFIG_SQL = 'SELECT config FROM function_deployments WHERE function_id = ? ORDER BY version DESC LIMIT 1';
const LIVE_DEPLOYMENT_SQL = 'SELECT * FROM function_deployments WHERE id = ? AND is_active = ?';
const EVENT_COLUMNS = 'function_id, deployment_id, version, event, message, created_at';

function quotaAsk(input: AllocateInput): QuotaAsk {
  return { newFunctionName: input.name, adding: input.declaredSize ?? 0 };
}

function upsertBindings(input: AllocateInput, candidateId: string, now: string): string[] {
  return [candidateId, input.userId, input.name, now, now];
}

function allocateSqlite(tx: SqliteTx, input: AllocateInput): AllocatedDeployment {
  // BEGIN IMMEDIATE has taken the write lock, which is the account's lock on SQLite.
  const read = input.quotas ? accountQuotaRead(input.quotas, input.userId, quotaAsk(input)) : null;
  if (read) refuseOverQuota(input.quotas!, tx.get<Record<string, unknown>>(read.sql, ...read.bindings)!, quotaAsk(input));
  const now = nowIso();
  const candidateId = randomUUID();
  const fn = tx.get<FunctionRow>(UPSERT_FUNCTION_SQL, ...upsertBindings(input, candidateId, now))!;
  const latest = tx.get<{ config: string }>(LATEST_CONFIG_SQL, fn.id);
  const base = input.fromLive && fn.active_deployment_id ? tx.get<DeploymentRow>(LIVE_DEPLOYMENT_SQL, fn.active_deployment_id, 1) : undefined;
  const plan = planDeployment(input, fn, latest?.config, base, now);
  const columns = Object.keys(plan.deployment);
  // better-sqlite3 binds no booleans (knex turns them into 0/1 itself)
  const values = Object.values(plan.deployment).map((v) => (typeof v === 'boolean' ? Number(v) : v));
  const row = tx.get<DeploymentRow>(`INSERT INTO function_deployments (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')}) RETURNING *`, ...values)!;
  tx.run(`INSERT INTO function_logs (${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`, ...plan.event);
  return { fn, deployment: row, isNewFunction: fn.id === candidateId };
}

/**
 * PostgreSQL, in two round trips outside knex (pg-direct.ts), since deploys queue behind the locks
 * for every one of them: BEGIN with the locks and the reads, then the deployment, its event and
 * COMMIT (a third only when the configuration must be read again, below).
 *
 * Which locks. A new function, or a version that enters the build queue at once (a configuration
 * change), adds to counts the quotas bind here (functions, builds, archive bytes): the account's
 * lock first, as every other writer of those counts takes it, in a statement of its own (a
 * statement that waited for a lock would still read as things were before the holder committed).
 * A plain deploy of an existing function adds to none of them: its version waits for its upload,
 * and /complete checks builds and bytes again under the account's lock, where they bind. It takes
 * the function's lock only, so an account's deploys of different functions run side by side; its
 * counts are read all the same, to refuse early a deploy whose complete would be refused (a race
 * with a concurrent complete can let one through, which its own complete then refuses).
 */
async function allocatePostgres(db: Db, input: AllocateInput): Promise<AllocatedDeployment> {
  if (input.status !== 'building') {
    const existing = await allocateExistingPostgres(db, input);
    // no such function: nothing was written, and it is created under the account's lock below
    if (existing) return existing;
  }
  const read = quotaRead(input);
  const now = nowIso();
  const allocated = await pgTransaction(db, async (tx) => {
    const candidateId = randomUUID();
    const lock = input.quotas ? accountLockStatement(input.quotas, input.userId) : null;
    const results = await tx.run(...(lock ? [lock] : []), withReads(read, UPSERT_FUNCTION_SQL, upsertBindings(input, candidateId, now)));
    return finishPostgres(tx, input, results[results.length - 1]![0] as UpsertedRow, candidateId, now);
  });
  if (input.status === 'building') announceQueuedCommittedLocally();
  return allocated;
}

function quotaRead(input: AllocateInput): { sql: string; bindings: string[] } | null {
  return input.quotas ? accountQuotaRead(input.quotas, input.userId, quotaAsk(input)) : null;
}

/**
 * The statement that locks the function (incrementing it, or creating it), with the reads the
 * deployment needs. Both reads see the statement's snapshot, taken before the function's row lock
 * is waited for: the counts are then at most stricter (a holder of only the function's lock can
 * only have lowered them); the configuration may miss a version allocated just before ours, so
 * unless the version read is the one right before ours it is read again (finishPostgres).
 */
function withReads(read: { sql: string; bindings: string[] } | null, functionSql: string, functionBindings: readonly unknown[]): PgStatement {
  return {
    sql: `WITH ${read ? `q AS (${read.sql}), ` : ''}f AS (${functionSql})
     SELECT f.*, ${read ? '(SELECT row_to_json(q) FROM q)' : 'NULL'} AS quota_counts, latest.version AS latest_version, latest.config AS latest_config
       FROM f LEFT JOIN LATERAL (SELECT version, config FROM function_deployments WHERE function_id = f.id ORDER BY version DESC LIMIT 1) latest ON true`,
    bindings: [...(read?.bindings ?? []), ...functionBindings],
    prepare: true,
  };
}

function incrementStatement(input: AllocateInput, now: string): PgStatement {
  return withReads(quotaRead(input), INCREMENT_FUNCTION_SQL, [now, input.userId, input.name]);
}

/**
 * A deploy of an existing function, under its lock only; null when there is no such function
 * (nothing is written). A plain deploy (its version waits for its upload) joins this process's
 * group of them (below); the group's queue full, or a configuration change, goes alone.
 */
async function allocateExistingPostgres(db: Db, input: AllocateInput): Promise<AllocatedDeployment | null> {
  if (!input.fromLive) {
    const grouped = allocationGroup(db).submit({ input, context: new AsyncResource('containerpub.allocate') });
    if (grouped) return grouped;
  }
  return allocateExistingAlone(db, input);
}

function allocateExistingAlone(db: Db, input: AllocateInput): Promise<AllocatedDeployment | null> {
  const now = nowIso();
  return pgTransaction(db, async (tx) => {
    const [rows] = await tx.run(incrementStatement(input, now));
    return rows!.length === 0 ? null : finishPostgres(tx, input, rows![0] as UpsertedRow, null, now);
  });
}

interface GroupJob {
  input: AllocateInput;
  /** the caller's async context: its deployment records its request's id (currentRequestId) */
  context: AsyncResource;
}

/** Deploys allocated in one PostgreSQL transaction at most. */
export const PG_GROUP_MAX = 16;
/**
 * One group in progress at a time: the deploys that arrive meanwhile make the next group, and the
 * larger the groups the less each deploy costs. A second group at once would have its functions
 * in common with the first (under load every group holds most of the functions being deployed),
 * so it could not be planned from the first's snapshots, which the first is about to change: it
 * would read first, and wait in PostgreSQL for the first's locks. /deploy on a settled server,
 * 16 / 64 clients: one group at a time 2,948–2,991 / 2,982–3,149 requests a second, two
 * 1,893–2,190 / 2,626–2,961 (docs/benchmarks.md, issue 15's thirteenth pass; the ninth pass, on
 * groups that all read first, had found two better). Groups that have all been in progress for
 * PG_GROUP_STALLED_MS (waiting for a lock that cleanup or a long delete holds, say) no longer hold
 * up the others: up to PG_GROUPS_STALLED groups then, each on a pooled connection (the pool has
 * 10). Two groups with a function in common are serialized by its row lock, in PostgreSQL: the
 * second proceeds the moment the first commits.
 */
const PG_GROUPS_AT_ONCE = 1;
const PG_GROUP_STALLED_MS = 50;
const PG_GROUPS_STALLED = 4;
/** Deploys waiting for a group at most; beyond, a deploy is allocated alone. */
const PG_GROUP_QUEUE_MAX = 1_000;

const groups = new WeakMap<Db, TurnBatcher<GroupJob, AllocatedDeployment | null>>();

function allocationGroup(db: Db): TurnBatcher<GroupJob, AllocatedDeployment | null> {
  let group = groups.get(db);
  if (!group) {
    group = new TurnBatcher({
      max: PG_GROUP_MAX,
      concurrency: PG_GROUPS_AT_ONCE,
      stalled: { afterMs: PG_GROUP_STALLED_MS, concurrency: PG_GROUPS_STALLED },
      maxQueued: PG_GROUP_QUEUE_MAX,
      run: (jobs) => allocateGroupPostgres(db, jobs),
    });
    groups.set(db, group);
  }
  return group;
}

/**
 * Group commit on PostgreSQL (SQLite has its own, sqliteGroupImmediate): the plain deploys of
 * existing functions asked for in one turn of the event loop, in one transaction, instead of two
 * round trips and several statements each. Under load the API's side of each round trip, not
 * PostgreSQL, bounded /deploy (docs/benchmarks.md, issue 15's eighth pass), and deploys of one
 * function queued on its row lock, held meanwhile.
 *
 * A group whose functions this process wrote last (function-snapshots.ts) is planned before it is
 * sent and commits in one round trip (commitGroupPlanned): the locks are then held while
 * PostgreSQL runs one message, not across a wait for this process's event loop between two (a
 * group of two messages took 3.6–5.5 ms under load in the bench, of which PostgreSQL's CPU was
 * ~1.1–1.5 ms). Any other
 * group, or one whose rows changed since, reads first (commitGroupReadFirst). Either way each
 * deploy is planned as if allocated alone, in the order asked. Any refusal (a quota, a bad
 * configuration) or error rolls the whole group back, and each of its deploys is then allocated
 * alone, on the path of one: refusals are rare, and so no deploy is refused for another's sake and
 * no number is spent on a refused one. Only a failure with the COMMIT sent and no answer leaves the
 * outcome unknown: the group fails with it, as a deploy alone would.
 */
async function allocateGroupPostgres(db: Db, jobs: GroupJob[]): Promise<Outcome<AllocatedDeployment | null>[]> {
  const snapshots = functionSnapshots(db);
  const keys = [...new Set(jobs.map((job) => functionKey(job.input)))];
  // the group's functions are marked in progress meanwhile (take, hold): no other group plans from
  // the snapshots this one is about to change
  const attempt = async (path: 'planned' | 'read_first', commit: () => Promise<(AllocatedDeployment | null)[] | null>) => {
    try {
      const allocated = await commit();
      if (allocated) metricsOf(db)?.deployGroups.inc({ path });
      return allocated;
    } finally {
      snapshots.release(keys);
    }
  };
  const known = snapshots.take(keys);
  let allocated = known ? await attempt('planned', () => commitGroupPlanned(db, jobs, new Map(keys.map((k, i) => [k, known[i]!])))) : null;
  if (!allocated) {
    snapshots.hold(keys);
    allocated = await attempt('read_first', () => commitGroupReadFirst(db, jobs));
  }
  if (allocated) return allocated.map((value) => ({ ok: true, value }));
  // refused or failed, nothing written: each deploy alone, on the path of one (its rows then change
  // under this group's snapshots)
  snapshots.forget(keys);
  metricsOf(db)?.deployGroups.inc({ path: 'alone' });
  const outcomes: Outcome<AllocatedDeployment | null>[] = new Array(jobs.length);
  const byFunction = new Map<string, number[]>();
  jobs.forEach((job, i) => byFunction.set(functionKey(job.input), [...(byFunction.get(functionKey(job.input)) ?? []), i]));
  // a function's deploys one after the other, in the order asked (functions side by side)
  await Promise.all(
    [...byFunction.values()].map(async (indexes) => {
      for (const i of indexes) {
        try {
          outcomes[i] = { ok: true, value: await jobs[i]!.context.runInAsyncScope(() => allocateExistingAlone(db, jobs[i]!.input)) };
        } catch (e) {
          outcomes[i] = { ok: false, err: e };
        }
      }
    }),
  );
  return outcomes;
}

/**
 * The group planned from this process's snapshots of its functions, and committed in one message:
 * the locks (in id order, lockFunctionRows's), a check that every row is still as its snapshot has
 * it, the quotas' checks, the increments, the deployments with their events, COMMIT. A row that
 * changed since (or a quota that would refuse) fails its check: PostgreSQL skips the rest of the
 * message and nothing is written, and this answers null (so does a plan that throws). Every
 * statement is prepared: parsed and planned once per connection and shape (number of functions).
 */
async function commitGroupPlanned(db: Db, jobs: GroupJob[], known: Map<string, FunctionSnapshot>): Promise<(AllocatedDeployment | null)[] | null> {
  const now = nowIso();
  const latestConfig = new Map([...known].map(([k, s]) => [k, s.latestConfig]));
  const taken = new Map<string, number>();
  let plans: DeploymentPlan[];
  try {
    plans = jobs.map(({ input, context }) => {
      const k = functionKey(input);
      const { row } = known.get(k)!;
      const n = (taken.get(k) ?? 0) + 1;
      taken.set(k, n);
      const fn = { ...row, last_version: num(row.last_version) + n, intent_seq: num(row.intent_seq) + n, updated_at: now } as FunctionRow;
      const plan = context.runInAsyncScope(() => planDeployment(input, fn, latestConfig.get(k), undefined, now));
      latestConfig.set(k, plan.deployment.config as string);
      return plan;
    });
  } catch {
    return null; // the path that reads first refuses it, with the deploy alone
  }
  const ids = [...known.values()].map((s) => s.row.id).sort();
  const rowsAsKnown = [...known.values()].map((s) => [s.row.id, s.rowVersion]);
  const quotaGuards = new Map<string, { sql: string; bindings: (string | number)[] }>();
  for (const { input } of jobs) {
    if (!input.quotas || quotaGuards.has(input.userId)) continue;
    const addings = jobs.filter((j) => j.input.userId === input.userId).map((j) => j.input.declaredSize ?? 0);
    const guard = accountQuotaGuard(input.quotas, input.userId, addings);
    if (guard) quotaGuards.set(input.userId, guard);
  }
  const byId = new Map([...known].map(([k, s]) => [s.row.id, { key: k, n: taken.get(k)! }]));
  let sent = false;
  let results: unknown[][];
  try {
    results = await pgTransaction(db, (tx) => {
      sent = true;
      return tx.commit(
        { sql: `SELECT id FROM functions WHERE id IN (${ids.map(() => '?::uuid').join(', ')}) ORDER BY id FOR NO KEY UPDATE`, bindings: ids, prepare: true },
        // a statement of its own, after the locks': it sees what their previous holders committed
        {
          sql: `SELECT 1 / (count(*) = ?::int)::int FROM functions WHERE (id, xmin::text) IN (${rowsAsKnown.map(() => '(?::uuid, ?::text)').join(', ')})`,
          bindings: [rowsAsKnown.length, ...rowsAsKnown.flat()],
          prepare: true,
        },
        ...[...quotaGuards.values()].map((guard) => ({ ...guard, prepare: true })),
        {
          sql: `WITH asked(id, n) AS (VALUES ${ids.map(() => '(?::uuid, ?::int)').join(', ')})
            UPDATE functions SET last_version = functions.last_version + asked.n, intent_seq = functions.intent_seq + asked.n, updated_at = ?
              FROM asked WHERE functions.id = asked.id RETURNING functions.id, functions.last_version, functions.xmin::text AS row_version`,
          bindings: [...ids.flatMap((id) => [id, byId.get(id)!.n]), now],
          prepare: true,
        },
        insertDeploymentsStatement(plans),
      );
    });
  } catch (err) {
    // PostgreSQL refused a statement (a check): the rest of the message, its COMMIT too, was skipped
    if (!sent || (err instanceof DatabaseError && !isDatabaseUnavailable(err))) return null;
    throw err;
  }
  // Only the numbers and the new xmin come back: the xmin check proved each row was its snapshot,
  // so the row now is the snapshot as incremented (and the deployments are their plans).
  const incremented = results[results.length - 2] as { id: string; last_version: number; row_version: string }[];
  insertedAll(results[results.length - 1]!, plans);
  const rows = new Map<string, FunctionRow & { row_version: string }>();
  for (const { id, last_version: committed, row_version: rowVersion } of incremented) {
    const { key, n } = byId.get(id)!;
    const { row } = known.get(key)!;
    // the check above makes this so; were it not, the numbers planned would not be the row's
    if (num(committed) !== num(row.last_version) + n) {
      throw new Error(`function ${id}: version ${num(committed)} committed where ${num(row.last_version) + n} was planned`);
    }
    rows.set(key, { ...row, last_version: num(committed), intent_seq: num(row.intent_seq) + n, updated_at: now, row_version: rowVersion });
  }
  rememberGroup(db, rows, latestConfig);
  return allocatedInOrder(jobs, rows, (i) => newDeploymentRow(plans[i]!));
}

/**
 * The group in two round trips, reading before it plans: the functions are locked first, in one
 * statement, in id order (the order every locker of several functions uses, lockFunctionRows), so
 * a group cannot deadlock with another (of this process or another replica) or with cleanup. Then
 * one statement increments them all, each by its number of deploys, and sees what the locks'
 * previous holders committed; the accounts' quota counts are read once each. One statement then
 * inserts the deployments and their events. A function that does not exist has no row locked or
 * incremented: its job answers null, and it is created alone under the account's lock. Null
 * (nothing written) when PostgreSQL or a check refused the group.
 */
async function commitGroupReadFirst(db: Db, jobs: GroupJob[]): Promise<(AllocatedDeployment | null)[] | null> {
  let committing = false;
  try {
    return await pgTransaction(db, async (tx) => {
      const now = nowIso();
      // each function once, with how many of the group's versions are its
      const asked = new Map<string, { input: AllocateInput; n: number }>();
      for (const { input } of jobs) {
        const f = asked.get(functionKey(input));
        if (f) f.n++;
        else asked.set(functionKey(input), { input, n: 1 });
      }
      // the quota counts once per account (what a deploy of an existing function can be refused for: builds, bytes)
      const quotaReads = new Map<string, PgStatement>();
      for (const { input } of jobs) {
        const read = input.quotas && !quotaReads.has(input.userId) ? accountQuotaRead(input.quotas, input.userId, { adding: 0 }) : null;
        if (read) quotaReads.set(input.userId, { ...read, prepare: true });
      }
      const [, incremented, ...counts] = await tx.run(
        lockFunctionsStatement([...asked.values()].map((f) => f.input)),
        incrementFunctionsStatement([...asked.values()], now),
        ...quotaReads.values(),
      );
      const countsOf = new Map([...quotaReads.keys()].map((userId, i) => [userId, counts[i]![0] as Record<string, unknown>]));
      const rows = new Map((incremented as (UpsertedRow & { row_version: string })[]).map((row) => [functionKey({ userId: row.user_id, name: row.name }), row]));
      // The reads again where the statement's snapshot missed a version (not expected: the locks
      // were taken by the statement before), once per function.
      const again = [...rows.entries()].filter(([k, row]) => num(row.latest_version) !== num(row.last_version) - asked.get(k)!.n);
      const reread = again.length > 0 ? await tx.run(...again.map(([, row]) => ({ sql: LATEST_CONFIG_SQL, bindings: [row.id] }))) : [];
      const latestConfig = new Map([...rows.entries()].map(([k, row]) => [k, row.latest_config ?? undefined]));
      again.forEach(([k], i) => latestConfig.set(k, (reread[i]![0] as { config: string } | undefined)?.config));
      // Each deploy as if allocated alone, one after the other in the order asked: its own version
      // and intent, planned on the configuration of the version before it.
      const fns = new Map([...rows].map(([k, { quota_counts: _c, latest_version: _v, latest_config: _l, ...fn }]) => [k, fn]));
      const taken = new Map<string, number>();
      const plans = jobs.map(({ input, context }) => {
        const k = functionKey(input);
        const row = fns.get(k);
        if (!row) return null;
        const back = asked.get(k)!.n - 1 - (taken.get(k) ?? 0);
        taken.set(k, (taken.get(k) ?? 0) + 1);
        const counts = countsOf.get(input.userId);
        if (input.quotas && counts) refuseOverQuota(input.quotas, counts, { adding: input.declaredSize ?? 0 });
        const plan = context.runInAsyncScope(() => planDeployment(input, asAllocated(row, back), latestConfig.get(k), undefined, now));
        latestConfig.set(k, plan.deployment.config as string);
        return plan;
      });
      const toInsert = plans.filter((p) => p !== null);
      // none of them exists: nothing written, rolled back
      if (toInsert.length === 0) return plans.map(() => null);
      committing = true;
      const [inserted] = await tx.commit(insertDeploymentsStatement(toInsert));
      insertedAll(inserted!, toInsert);
      rememberGroup(db, fns, latestConfig);
      return allocatedInOrder(jobs, fns, (i) => newDeploymentRow(plans[i]!));
    });
  } catch (err) {
    // PostgreSQL refused a statement: the message stopped there, before its COMMIT
    const rolledBack = !committing || (err instanceof DatabaseError && !isDatabaseUnavailable(err));
    if (!rolledBack) throw err;
    return null;
  }
}

/** A group's function rows as committed, kept as this process's snapshots for the next group. */
function rememberGroup(db: Db, rows: Map<string, FunctionRow & { row_version: string }>, latestConfig: Map<string, string | undefined>): void {
  const snapshots = functionSnapshots(db);
  for (const [k, { row_version: rowVersion, ...row }] of rows) snapshots.remember(k, { row, rowVersion, latestConfig: latestConfig.get(k) });
}

/** The function row a deploy is answered with: as incremented, less the versions the group took after it. */
function asAllocated(row: FunctionRow & { row_version?: string }, back: number): FunctionRow {
  const { row_version: _version, ...fn } = row;
  return { ...fn, last_version: num(row.last_version) - back, intent_seq: num(row.intent_seq) - back } as FunctionRow;
}

/** Each job's allocation, in the order asked (null: its function does not exist). */
function allocatedInOrder(
  jobs: GroupJob[],
  rows: Map<string, FunctionRow>,
  deploymentOf: (i: number) => DeploymentRow,
): (AllocatedDeployment | null)[] {
  const asked = new Map<string, number>();
  for (const { input } of jobs) asked.set(functionKey(input), (asked.get(functionKey(input)) ?? 0) + 1);
  const taken = new Map<string, number>();
  return jobs.map(({ input }, i) => {
    const k = functionKey(input);
    const row = rows.get(k);
    if (!row) return null;
    const back = asked.get(k)! - 1 - (taken.get(k) ?? 0);
    taken.set(k, (taken.get(k) ?? 0) + 1);
    return { fn: asAllocated(row, back), deployment: deploymentOf(i), isNewFunction: false };
  });
}

function functionKey(input: Pick<AllocateInput, 'userId' | 'name'>): string {
  return JSON.stringify([input.userId, input.name]);
}

/** The functions' row locks, in id order (lockFunctionRows's), before any of them is incremented. */
function lockFunctionsStatement(all: AllocateInput[]): PgStatement {
  const seen = new Set<string>();
  const inputs = all.filter((i) => !seen.has(functionKey(i)) && seen.add(functionKey(i)));
  return {
    sql: `SELECT id FROM functions WHERE (user_id, name) IN (${inputs.map(() => '(?, ?)').join(', ')}) ORDER BY id FOR NO KEY UPDATE`,
    bindings: inputs.flatMap((i) => [i.userId, i.name]),
    prepare: true,
  };
}

/**
 * The group's functions incremented in one statement, each by its number of versions, with the
 * latest version's number and configuration of each (read after the locks: no version is missed).
 */
function incrementFunctionsStatement(functions: { input: AllocateInput; n: number }[], now: string): PgStatement {
  return {
    sql: `WITH asked(user_id, name, n) AS (VALUES ${functions.map(() => '(?::uuid, ?, ?::int)').join(', ')}),
     f AS (UPDATE functions SET last_version = functions.last_version + asked.n, intent_seq = functions.intent_seq + asked.n, updated_at = ?
             FROM asked WHERE functions.user_id = asked.user_id AND functions.name = asked.name RETURNING functions.*, functions.xmin::text AS row_version)
     SELECT f.*, NULL AS quota_counts, latest.version AS latest_version, latest.config AS latest_config
       FROM f LEFT JOIN LATERAL (SELECT version, config FROM function_deployments WHERE function_id = f.id ORDER BY version DESC LIMIT 1) latest ON true`,
    bindings: [...functions.flatMap((f) => [f.input.userId, f.input.name, f.n]), now],
    prepare: true,
  };
}

/**
 * Deployments and their events, in one statement (its rows: the deployments' ids, in no set order);
 * the events' foreign key is checked at the statement's end. The rows are not read back: each is
 * its plan (newDeploymentRow).
 */
function insertDeploymentsStatement(plans: DeploymentPlan[]): PgStatement {
  const columns = Object.keys(plans[0]!.deployment);
  const row = `(${columns.map(() => '?').join(', ')})`;
  return {
    sql: `WITH d AS (INSERT INTO function_deployments (${columns.join(', ')}) VALUES ${plans.map(() => row).join(', ')} RETURNING id),
     e AS (INSERT INTO function_logs (${EVENT_COLUMNS}) VALUES ${plans.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')})
     SELECT id FROM d`,
    // by name: every plan has the same columns
    bindings: [...plans.flatMap((p) => columns.map((c) => p.deployment[c]!)), ...plans.flatMap((p) => p.event)],
    prepare: true,
  };
}

/** The INSERT's rows (the ids it wrote) are the plans', every one. */
function insertedAll(rows: unknown[], plans: DeploymentPlan[]): void {
  const ids = new Set((rows as { id: string }[]).map((r) => r.id));
  if (ids.size !== plans.length || !plans.every((p) => ids.has(p.deployment.id))) {
    throw new Error(`${plans.length} deployments planned, ${ids.size} inserted`);
  }
}

/**
 * The columns of function_deployments a plan leaves to the table's defaults, with those defaults.
 * PostgreSQL's allocations answer with the plan and these instead of RETURNING *: parsing 44
 * columns for each version of a group (and 16 for each function) was the largest part of the
 * API's work on the database's answer: without it a steady probe of planned groups committed
 * 11–13 % more deploys a second (docs/benchmarks.md, issue 15's fourteenth pass). A test compares a
 * row answered so with the row stored, column by column: a column added to the table (or a default
 * changed) without its entry here fails it.
 */
const UNSET_DEPLOYMENT_COLUMNS = {
  build_logs: null,
  error: null,
  ...UNATTEMPTED,
  last_error: null,
  upload_claimed_at: null,
  deployed_at: null,
  activated_at: null,
  archive_key: null,
  archive_storage_class: null,
  archive_removed_at: null,
  image_removed_at: null,
  archived_at: null,
  cleanup_note: null,
  runtime_driver: null,
  approved_by: null,
  approved_at: null,
} satisfies Partial<Record<keyof DeploymentRow, unknown>>;

/**
 * A new deployment's row as stored: its plan, and the table's defaults for the rest. Object.assign,
 * not `{ ...a, ...b }`: on Node 20 spreading these two into a literal took ~60 µs a row (a V8 slow
 * path for this many properties), Object.assign ~2 µs.
 */
function newDeploymentRow(plan: DeploymentPlan): DeploymentRow {
  return Object.assign({}, UNSET_DEPLOYMENT_COLUMNS, plan.deployment) as unknown as DeploymentRow;
}

type UpsertedRow = FunctionRow & { quota_counts: Record<string, unknown> | null; latest_version: number | null; latest_config: string | null };

/** The checks, the configuration, and the deployment with its event, committed; under the function's lock. */
async function finishPostgres(tx: PgTx, input: AllocateInput, row: UpsertedRow, candidateId: string | null, now: string): Promise<AllocatedDeployment> {
  const { quota_counts: counts, latest_version: latestVersion, latest_config: latestConfig, ...fn } = row;
  if (input.quotas && counts) refuseOverQuota(input.quotas, counts, quotaAsk(input));
  // In statements after the function's: their snapshots see what the lock's previous holder committed.
  const again: PgStatement | null = num(latestVersion) === num(fn.last_version) - 1 ? null : { sql: LATEST_CONFIG_SQL, bindings: [fn.id] };
  const live: PgStatement | null = input.fromLive && fn.active_deployment_id ? { sql: LIVE_DEPLOYMENT_SQL, bindings: [fn.active_deployment_id, true] } : null;
  const reads = again || live ? await tx.run(...[again, live].filter((r) => r !== null)) : [];
  const latest = again ? (reads[0]![0] as { config: string } | undefined)?.config : (latestConfig ?? undefined);
  const base = live ? (reads[again ? 1 : 0]![0] as DeploymentRow | undefined) : undefined;
  const plan = planDeployment(input, fn, latest, base, now);
  // and the runners' wake-up for a version queued at once (NOTIFY is delivered at commit)
  const [inserted] = await tx.commit(insertDeploymentsStatement([plan]), ...(input.status === 'building' ? [{ sql: `NOTIFY ${BUILD_QUEUED_CHANNEL}` }] : []));
  insertedAll(inserted!, [plan]);
  return { fn, deployment: newDeploymentRow(plan), isNewFunction: fn.id === candidateId };
}

interface DeploymentPlan {
  deployment: Record<string, Knex.Value> & { id: string; auto_activate: boolean };
  event: (string | number)[];
}

/**
 * The deployment row and its event, from what the transaction read: the function as incremented,
 * the latest version's configuration and, for a configuration change, the live version. Throws (a
 * bad configuration, no live version) before anything is written for the version.
 */
function planDeployment(
  input: AllocateInput,
  fn: FunctionRow,
  latestConfig: string | undefined,
  base: DeploymentRow | undefined,
  now: string,
): DeploymentPlan {
  const version = num(fn.last_version);
  let stored = parseStoredConfig(latestConfig);
  if (input.config?.patch) stored = applyConfigPatch(stored, input.config.patch, { functionId: fn.id, sealer: input.config.sealer });
  if (input.config) checkConfig(stored, input.config.platform);
  if (input.fromLive && !base) throw errors.noActiveDeployment();
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
  const message =
    (base ? `configuration change requested: version ${version} runs version ${num(base.version)}'s code` : `deploy of version ${version} requested`) +
    (deployment.auto_activate ? '' : '; it will wait for approval');
  return { deployment, event: [fn.id, deployment.id, version, 'deploy_requested', message, now] };
}
