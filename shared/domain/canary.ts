// Canary releases: a candidate version walked through traffic steps (5 % → 25 % → … → promoted)
// while its own figures stay within the thresholds, and pulled back the moment they do not.
//
// Everything a canary is lives in its function_canaries row: the current step, when it began, and
// the candidate's metric totals then (the baseline; the window is what came after). The runner's
// controller (runner/canary-controller.ts) only reads rows and calls decideCanary, so any runner,
// restarted or new, takes over where another left off. Ending a canary by hand (rollback, promote,
// abort) goes through canary-state.ts.
import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { z } from 'zod';
import type { Db } from '../db/knex.ts';
import { bool, isUniqueViolation, lockFunctionRow, num, withTransaction } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { endCanaryInTransaction, runningCanary, type CanaryRow, type CanaryStatus } from './canary-state.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { recordEvent } from './events.ts';
import { deploymentTotals, windowFigures, type Totals, type WindowFigures } from './metrics.ts';
import { BUILT_STATUS } from './model.ts';
import { actorOf, clearCandidateInTransaction, promoteInTransaction, setCandidateInTransaction } from './traffic.ts';

export const DEFAULT_CANARY_STEPS: readonly number[] = [5, 25, 50, 100];

const int = (what: string) => z.number().int(`${what} must be an integer`);

/** POST /api/functions/:id/canary */
export const canaryRequestSchema = z.strictObject({
  version: int('version').positive('version must be a positive integer'),
  steps: z
    .array(int('a step').min(1, 'a step is a percentage from 1 to 100').max(100, 'a step is a percentage from 1 to 100'))
    .min(1, 'give at least one step')
    .max(20, 'at most 20 steps')
    .refine((s) => s.every((v, i) => i === 0 || v > s[i - 1]!), 'steps must be strictly ascending, e.g. [5, 25, 50, 100]')
    .default(() => [...DEFAULT_CANARY_STEPS]),
  intervalSeconds: int('intervalSeconds').min(1, 'at least 1 second').max(86_400, 'at most 86400 seconds (a day)').default(60),
  maxErrorRate: z.number().min(0, 'a rate from 0 to 1').max(1, 'a rate from 0 to 1 (0.05 is 5 %)').default(0.05),
  maxP99Ms: int('maxP99Ms').positive('must be a positive number of milliseconds').max(3_600_000, 'at most an hour').optional(),
  minRequests: int('minRequests').min(1, 'at least 1 request').max(1_000_000_000, 'at most 1e9').default(20),
});
export type CanaryRequest = z.output<typeof canaryRequestSchema>;

/** The candidate's figures since the current step began. */
export interface CanaryWindow extends WindowFigures {
  /** the start of the first minute bucket counted (the step began within it) */
  since: string;
}

/** What the last decision saw (last_window), and what it decided. */
export interface CanaryEvaluation extends WindowFigures {
  stepIndex: number;
  percent: number;
  verdict: 'waiting' | 'advanced' | 'promoted' | 'rolled_back';
  elapsedMs: number;
  at: string;
}

export interface CanaryView {
  id: string;
  functionId: string;
  version: number;
  deploymentId: string;
  status: CanaryStatus;
  steps: number[];
  stepIndex: number;
  /** the candidate's share now: the current step while running, 100 once promoted, 0 once ended otherwise */
  percent: number;
  intervalSeconds: number;
  maxErrorRate: number;
  maxP99Ms: number | null;
  minRequests: number;
  stepStartedAt: string | null;
  /** when the current step's interval is over (null once ended); past it, the canary waits for minRequests */
  nextEvaluationAt: string | null;
  /** running: the live window of the current step; ended: the figures of the last evaluation (or null) */
  window: CanaryWindow | WindowFigures | null;
  lastEvaluation: CanaryEvaluation | null;
  /** why it ended (the numbers, for a rollback) */
  reason: string | null;
  startedBy: string | null;
  createdAt: string | null;
  updatedAt: string | null;
  finishedAt: string | null;
}

interface Baseline {
  since: string;
  totals: Totals;
}

const stepsOf = (c: CanaryRow): number[] => JSON.parse(c.steps) as number[];
const pct = (rate: number) => `${(rate * 100).toFixed(1)} %`;
const parseJson = <T>(text: string | null): T | null => {
  if (!text) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
};

/**
 * Windows are summed from per-minute buckets starting with the minute the step began in, and the
 * baseline is the same sum taken when it began: pruned old buckets never change a window, and a
 * window costs a few rows to read however old the version is.
 */
function minuteOf(iso: string): string {
  const d = new Date(iso);
  d.setUTCSeconds(0, 0);
  return d.toISOString();
}

async function takeBaseline(q: Knex | Knex.Transaction, deploymentId: string, stepStartedAt: string): Promise<Baseline> {
  const since = minuteOf(stepStartedAt);
  return { since, totals: await deploymentTotals(q, deploymentId, since) };
}

/** The candidate's figures since the current step began, read from the metric buckets now. */
export async function readCanaryWindow(q: Knex | Knex.Transaction, c: CanaryRow): Promise<CanaryWindow> {
  const baseline = parseJson<Baseline>(c.window_baseline);
  const since = baseline?.since ?? minuteOf(toIso(c.step_started_at)!);
  const now = await deploymentTotals(q, c.deployment_id, since);
  return { ...windowFigures(now, baseline?.totals ?? null), since };
}

export interface CanaryLimits {
  maxErrorRate: number;
  maxP99Ms: number | null;
  minRequests: number;
}

export type CanaryVerdict =
  /** over a threshold, with the evidence: `why` holds the numbers */
  | { kind: 'rollback'; why: string }
  /** the interval is over, with minRequests within the thresholds */
  | { kind: 'advance' }
  /** the interval is over, with fewer than minRequests: no decision without evidence */
  | { kind: 'wait' }
  /** the interval goes on and nothing is conclusive yet */
  | { kind: 'none' };

/**
 * The rule, in one place. Advancing needs the interval to be over and minRequests requests within
 * every threshold. Rolling back does not wait for the interval's end (a bad candidate keeps failing
 * its share of callers until it is pulled), but it needs the same evidence as advancing:
 * minRequests requests over a threshold, or errors alone that put the window over maxErrorRate
 * however the requests still missing to minRequests answer (errors > maxErrorRate × minRequests).
 * So a first unlucky error out of 3 requests does not end a canary asking for 20, while 50 %
 * failures end it as soon as the threshold is certain. p99 is judged only with minRequests: a few
 * slow cold starts are not a percentile.
 */
export function judgeWindow(limits: CanaryLimits, w: WindowFigures, intervalOver: boolean): CanaryVerdict {
  const enough = w.requests >= limits.minRequests;
  const overRate = w.requests > 0 && w.errorRate > limits.maxErrorRate;
  const overP99 = limits.maxP99Ms !== null && w.p99Ms !== null && w.p99Ms > limits.maxP99Ms;
  const certainErrors = w.errors > limits.maxErrorRate * limits.minRequests;
  const reasons: string[] = [];
  if (overRate && (enough || certainErrors)) {
    reasons.push(
      `error rate ${pct(w.errorRate)} (${w.errors} errors in ${w.requests} requests; ${w.timeouts} timeouts, ${w.crashes} crashes) ` +
        `is over maxErrorRate ${pct(limits.maxErrorRate)}`,
    );
  }
  if (overP99 && enough) reasons.push(`p99 ${w.p99Ms} ms over ${w.requests} requests is over maxP99Ms ${limits.maxP99Ms} ms`);
  if (reasons.length > 0) return { kind: 'rollback', why: reasons.join('; ') };
  if (!intervalOver) return { kind: 'none' };
  return enough ? { kind: 'advance' } : { kind: 'wait' };
}

function limitsOf(c: CanaryRow): CanaryLimits {
  return {
    maxErrorRate: Number(c.max_error_rate),
    maxP99Ms: c.max_p99_ms === null || c.max_p99_ms === undefined ? null : num(c.max_p99_ms),
    minRequests: num(c.min_requests),
  };
}

function intervalOver(c: CanaryRow, now: number): { over: boolean; elapsedMs: number } {
  const elapsedMs = now - Date.parse(toIso(c.step_started_at)!);
  return { over: elapsedMs >= num(c.interval_seconds) * 1000, elapsedMs };
}

/**
 * What the controller would decide about `c` now, read without locks or writes: most ticks find
 * nothing to do, and only those that do take the canary's lock and decideCanary's transaction.
 */
export async function assessCanary(db: Db, c: CanaryRow, now = Date.now()): Promise<{ verdict: CanaryVerdict; window: CanaryWindow }> {
  const window = await readCanaryWindow(db.knex, c);
  const verdict = judgeWindow(limitsOf(c), window, intervalOver(c, now).over);
  return { verdict, window };
}

/** True when a `wait` verdict was already recorded for the canary's current step (one event per step). */
export function waitRecorded(c: CanaryRow): boolean {
  const last = parseJson<CanaryEvaluation>(c.last_window);
  return last?.verdict === 'waiting' && last.stepIndex === num(c.step_index);
}

export async function listRunningCanaries(db: Db): Promise<CanaryRow[]> {
  return (await db.knex('function_canaries').where({ status: 'running' }).orderBy('created_at')) as CanaryRow[];
}

export type CanaryDecision = 'none' | 'waiting' | 'advanced' | 'promoted' | 'rolled_back' | 'stale';

/**
 * One decision about one step of one canary, in one transaction: the canary must still be running
 * at `stepIndex` (else 'stale': another controller, or a user, got there first), and every write is
 * conditional on that, so two controllers can never both advance a step or advance a canary that
 * was just rolled back. The window is read again inside, under the function's lock.
 */
export async function decideCanary(db: Db, canaryId: string, stepIndex: number): Promise<CanaryDecision> {
  return withTransaction(db, async (trx) => {
    const head = await trx('function_canaries').where({ id: canaryId }).first('function_id');
    if (!head) return 'stale';
    if (!(await lockFunctionRow(db, trx, head.function_id))) return 'stale';
    const c = (await trx('function_canaries').where({ id: canaryId, status: 'running', step_index: stepIndex }).first()) as
      | CanaryRow
      | undefined;
    if (!c) return 'stale';
    const now = Date.now();
    const window = await readCanaryWindow(trx, c);
    const { over, elapsedMs } = intervalOver(c, now);
    const verdict = judgeWindow(limitsOf(c), window, over);
    if (verdict.kind === 'none' || (verdict.kind === 'wait' && waitRecorded(c))) return 'none';

    const steps = stepsOf(c);
    const percent = steps[stepIndex]!;
    const stepText = `${percent} % (step ${stepIndex + 1} of ${steps.length})`;
    const version = num(c.version);
    const nowText = new Date(now).toISOString();
    const evaluation = (v: CanaryEvaluation['verdict']): string => {
      const { since: _since, ...figures } = window;
      return JSON.stringify({ ...figures, stepIndex, percent, verdict: v, elapsedMs, at: nowText } satisfies CanaryEvaluation);
    };
    // The guard every write stands on: still running, still at this step.
    const guarded = (changes: Record<string, unknown>) =>
      trx('function_canaries')
        .where({ id: c.id, status: 'running', step_index: stepIndex })
        .update({ ...changes, updated_at: nowText });
    const figuresText = `${window.requests} requests, ${window.errors} errors (${pct(window.errorRate)}), p99 ${window.p99Ms ?? '-'} ms`;

    if (verdict.kind === 'wait') {
      if ((await guarded({ last_window: evaluation('waiting') })) === 0) return 'stale';
      await recordEvent(trx, {
        functionId: c.function_id,
        deploymentId: c.deployment_id,
        version,
        event: 'canary_waiting',
        message:
          `canary of version ${version} waits at ${stepText}: ${window.requests} of the ${limitsOf(c).minRequests} requests ` +
          `it needs after ${Math.round(elapsedMs / 1000)} s; it does not advance without them`,
      });
      return 'waiting';
    }

    if (verdict.kind === 'rollback') {
      if ((await guarded({ last_window: evaluation('rolled_back') })) === 0) return 'stale';
      // the canary ends first: clearing the candidate is then plain traffic, whatever guards it has
      await endCanaryInTransaction(trx, { functionId: c.function_id, status: 'rolled_back', reason: `at ${stepText}: ${verdict.why}` });
      await clearCandidateInTransaction(db, trx, { functionId: c.function_id, why: `canary of version ${version} rolled back` });
      return 'rolled_back';
    }

    if (stepIndex + 1 < steps.length) {
      const next = steps[stepIndex + 1]!;
      const baseline = await takeBaseline(trx, c.deployment_id, nowText);
      const moved = await guarded({
        step_index: stepIndex + 1,
        step_started_at: nowText,
        window_baseline: JSON.stringify(baseline),
        last_window: evaluation('advanced'),
      });
      if (moved === 0) return 'stale';
      await setCandidateInTransaction(db, trx, { functionId: c.function_id, version, percent: next, actor: null, by: 'canary' });
      await recordEvent(trx, {
        functionId: c.function_id,
        deploymentId: c.deployment_id,
        version,
        event: 'canary_advanced',
        message: `canary of version ${version} advanced to ${next} % (step ${stepIndex + 2} of ${steps.length}); the last step had ${figuresText}`,
        // the instant the step was decided and the next one started (step_started_at), not when this row was written
        at: nowText,
      });
      return 'advanced';
    }

    if ((await guarded({ last_window: evaluation('promoted') })) === 0) return 'stale';
    await promoteInTransaction(db, trx, { functionId: c.function_id, actor: null, by: 'canary' });
    await endCanaryInTransaction(trx, {
      functionId: c.function_id,
      status: 'promoted',
      reason: `all ${steps.length} steps passed (the last one at ${percent} % had ${figuresText})`,
      at: nowText,
    });
    return 'promoted';
  });
}

/**
 * Starts a canary of `input.version` and gives it its first step's share, in one transaction. The
 * version must be built and not live, the function must have a live version to compare against,
 * and no other canary may be running (409s naming which).
 */
export async function startCanary(db: Db, userId: string, functionId: string, input: CanaryRequest): Promise<CanaryView> {
  const id = randomUUID();
  try {
    await withTransaction(db, async (trx) => {
      if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
      const fn = await trx('functions').where({ id: functionId }).first('user_id', 'active_deployment_id');
      if (fn.user_id !== userId) throw errors.functionNotFound();
      const running = await runningCanary(trx, functionId);
      if (running) throw errors.canaryRunning(num(running.version));
      const dep = await findDeploymentByVersion(trx, functionId, input.version);
      if (!dep) throw errors.versionNotFound(input.version);
      if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(input.version, dep.status);
      if (bool(dep.is_active)) {
        throw errors.conflict(`version ${input.version} is already live: a canary needs a version that is not`, { version: input.version });
      }
      if (!fn.active_deployment_id) throw errors.noActiveDeployment();

      const now = nowIso();
      const actor = await actorOf(trx, userId);
      await trx('function_canaries').insert({
        id,
        function_id: functionId,
        deployment_id: dep.id,
        version: input.version,
        status: 'running',
        steps: JSON.stringify(input.steps),
        step_index: 0,
        interval_seconds: input.intervalSeconds,
        max_error_rate: input.maxErrorRate,
        max_p99_ms: input.maxP99Ms ?? null,
        min_requests: input.minRequests,
        step_started_at: now,
        window_baseline: JSON.stringify(await takeBaseline(trx, dep.id, now)),
        started_by: actor,
        created_at: now,
        updated_at: now,
      });
      await setCandidateInTransaction(db, trx, { functionId, version: input.version, percent: input.steps[0]!, actor, by: 'canary' });
      const limits = [`error rate ≤ ${pct(input.maxErrorRate)}`, ...(input.maxP99Ms ? [`p99 ≤ ${input.maxP99Ms} ms`] : [])];
      await recordEvent(trx, {
        functionId,
        deploymentId: dep.id,
        version: input.version,
        event: 'canary_started',
        message:
          `canary of version ${input.version} started${actor ? ` by ${actor}` : ''}: ${input.steps.map((s) => `${s} %`).join(' → ')}, ` +
          `every ${input.intervalSeconds} s, ${limits.join(', ')}, at least ${input.minRequests} requests per step`,
        at: now,
      });
    });
  } catch (err) {
    // two starts at once: the one-running index refuses the second (the function lock makes this rare)
    if (isUniqueViolation(err)) {
      const running = await runningCanary(db.knex, functionId);
      throw errors.canaryRunning(running ? num(running.version) : input.version);
    }
    throw err;
  }
  return canaryView(db, functionId);
}

/** DELETE: ends the running canary `aborted` and gives the live version all the traffic again. */
export async function abortCanary(db: Db, userId: string, functionId: string): Promise<CanaryView> {
  await withTransaction(db, async (trx) => {
    if (!(await lockFunctionRow(db, trx, functionId))) throw errors.functionNotFound();
    const fn = await trx('functions').where({ id: functionId }).first('user_id');
    if (fn.user_id !== userId) throw errors.functionNotFound();
    const actor = await actorOf(trx, userId);
    const ended = await endCanaryInTransaction(trx, { functionId, status: 'aborted', reason: `aborted by ${actor ?? 'its owner'}` });
    if (!ended) throw errors.notFound('running canary');
    await clearCandidateInTransaction(db, trx, { functionId, why: `canary of version ${ended.version} aborted` });
  });
  return canaryView(db, functionId);
}

/** The running canary, else the latest one; 404 when the function never had one. */
export async function canaryView(db: Db, functionId: string): Promise<CanaryView> {
  const row =
    (await runningCanary(db.knex, functionId)) ??
    ((await db.knex('function_canaries').where({ function_id: functionId }).orderBy('created_at', 'desc').orderBy('id').first()) as
      | CanaryRow
      | undefined);
  if (!row) throw errors.notFound('canary');
  return toCanaryView(row, row.status === 'running' ? await readCanaryWindow(db.knex, row) : null);
}

function toCanaryView(c: CanaryRow, live: CanaryWindow | null): CanaryView {
  const steps = stepsOf(c);
  const stepIndex = num(c.step_index);
  const running = c.status === 'running';
  const last = parseJson<CanaryEvaluation>(c.last_window);
  const stepStartedAt = toIso(c.step_started_at);
  let window: CanaryView['window'] = live;
  if (!running && last) {
    const { stepIndex: _s, percent: _p, verdict: _v, elapsedMs: _e, at: _a, ...figures } = last;
    window = figures;
  }
  return {
    id: c.id,
    functionId: c.function_id,
    version: num(c.version),
    deploymentId: c.deployment_id,
    status: c.status,
    steps,
    stepIndex,
    percent: running ? steps[stepIndex]! : c.status === 'promoted' ? 100 : 0,
    intervalSeconds: num(c.interval_seconds),
    maxErrorRate: Number(c.max_error_rate),
    maxP99Ms: c.max_p99_ms === null || c.max_p99_ms === undefined ? null : num(c.max_p99_ms),
    minRequests: num(c.min_requests),
    stepStartedAt,
    nextEvaluationAt: running && stepStartedAt ? new Date(Date.parse(stepStartedAt) + num(c.interval_seconds) * 1000).toISOString() : null,
    window,
    lastEvaluation: last,
    reason: c.reason,
    startedBy: c.started_by,
    createdAt: toIso(c.created_at),
    updatedAt: toIso(c.updated_at),
    finishedAt: toIso(c.finished_at),
  };
}
