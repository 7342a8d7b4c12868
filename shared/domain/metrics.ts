// Per-version invocation metrics (function_metrics): requests, errors, timeouts, crashes and a
// latency histogram per deployment and minute. A canary is judged on these, and GET …/metrics shows
// them.
//
// Each serving process counts in memory and upserts, every METRICS_FLUSH_MS, its own row per
// (deployment, minute, source) holding its cumulative counts for that minute. Because the row holds
// the whole count rather than an increment, a flush is idempotent: one that fails or is repeated
// loses or doubles nothing, and the next one writes the right totals. Several processes never
// contend for a row (each has its own source); readers sum over sources.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { isForeignKeyViolation, num } from '../db/dialect.ts';
import { toIso } from '../db/time.ts';
import type { Logger } from '../logger.ts';
import { outsideRequest } from '../observability/request-context.ts';

/**
 * Upper bounds (ms, inclusive) of the latency buckets; the last is Infinity. Roughly log-spaced
 * from 1 ms to 15 min, denser between 50 ms and 2.5 s, where latency thresholds (maxP99Ms) are
 * usually set. Changing them changes the meaning of stored rows: only ever append before Infinity.
 */
export const LATENCY_BOUNDS_MS: readonly number[] = Object.freeze([
  1, 2, 4, 8, 15, 25, 50, 75, 100, 150, 250, 400, 600, 1_000, 1_500, 2_500, 4_000, 6_000, 10_000, 15_000, 30_000, 60_000,
  120_000, 300_000, 900_000, Infinity,
]);

const MINUTE_MS = 60_000;

export interface MetricSample {
  functionId: string;
  deploymentId: string;
  version: number;
  /** ok | error | timeout | crashed | aborted (the caller left: a request, not an error) */
  outcome: string;
  /** the HTTP status the caller got: a function's own 5xx counts as an error */
  status?: number;
  durationMs: number;
}

/** The bucket a duration falls in (the first whose upper bound holds it). */
export function latencyBucket(durationMs: number): number {
  const d = Number.isFinite(durationMs) && durationMs > 0 ? durationMs : 0;
  let lo = 0;
  let hi = LATENCY_BOUNDS_MS.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (d <= LATENCY_BOUNDS_MS[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Whether a sample counts as an error (a canary's error rate). */
export function isError(s: Pick<MetricSample, 'outcome' | 'status'>): boolean {
  return s.outcome === 'error' || s.outcome === 'timeout' || s.outcome === 'crashed' || (s.status !== undefined && s.status >= 500);
}

/** The start of the UTC minute `ms` falls in. */
export function minuteOf(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}

interface Bucket {
  functionId: string;
  deploymentId: string;
  version: number;
  minute: number;
  requests: number;
  errors: number;
  timeouts: number;
  crashes: number;
  durationSumMs: number;
  latency: number[];
  /** counted since the last successful write */
  dirty: boolean;
}

export interface MetricsRecorderOptions {
  flushMs: number;
  /** this process's name in the rows it writes; default `${hostname}/${pid}/${random}` */
  source?: string;
  /** (deployment, minute) buckets held at most; samples for a new one past it are dropped and counted */
  maxBuckets?: number;
  /** rows per upsert */
  batchRows?: number;
}

/** A name for this process's rows: unique even for a pid reused after a restart on the same host. */
export function defaultSource(): string {
  return `${os.hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`.slice(-100);
}

export class MetricsRecorder {
  readonly source: string;
  /** keyed by `${deploymentId} ${minute}` */
  private readonly buckets = new Map<string, Bucket>();
  private dropped = 0;
  /**
   * Minutes before this one were written and let go: their rows hold this process's final counts.
   * A sample stamped earlier (the clock stepped back) is counted in this minute instead, since a
   * new bucket for a let-go minute would overwrite its row with a smaller count.
   */
  private floor = 0;
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private closed = false;
  private readonly flushMs: number;
  private readonly maxBuckets: number;
  private readonly batchRows: number;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    opts: MetricsRecorderOptions,
  ) {
    this.flushMs = opts.flushMs;
    this.source = (opts.source ?? defaultSource()).slice(0, 100);
    // a busy process has a few buckets per live version; thousands only when the database is down
    this.maxBuckets = opts.maxBuckets ?? 10_000;
    this.batchRows = opts.batchRows ?? 200;
  }

  /** On the request path: counts in memory only; never awaits, never throws. */
  record(s: MetricSample, now = Date.now()): void {
    try {
      const minute = Math.max(minuteOf(now), this.floor);
      const key = `${s.deploymentId} ${minute}`;
      let b = this.buckets.get(key);
      if (!b) {
        if (this.buckets.size >= this.maxBuckets) {
          this.dropped++;
          return;
        }
        b = {
          functionId: s.functionId,
          deploymentId: s.deploymentId,
          version: s.version,
          minute,
          requests: 0,
          errors: 0,
          timeouts: 0,
          crashes: 0,
          durationSumMs: 0,
          latency: new Array<number>(LATENCY_BOUNDS_MS.length).fill(0),
          dirty: true,
        };
        this.buckets.set(key, b);
      }
      const duration = Number.isFinite(s.durationMs) && s.durationMs > 0 ? s.durationMs : 0;
      b.requests++;
      if (isError(s)) b.errors++;
      if (s.outcome === 'timeout') b.timeouts++;
      if (s.outcome === 'crashed') b.crashes++;
      b.durationSumMs += duration;
      b.latency[latencyBucket(duration)]!++;
      b.dirty = true;
      this.schedule();
    } catch (err) {
      this.logger.warn('an invocation could not be counted in the metrics', { err });
    }
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = outsideRequest(() =>
      setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.flushMs),
    );
  }

  /** Writes what was counted since the last write (one flush at a time); never throws. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (![...this.buckets.values()].some((b) => b.dirty) && this.dropped === 0) return;
    this.flushing = this.write().finally(() => (this.flushing = null));
    await this.flushing;
  }

  private async write(): Promise<void> {
    if (this.dropped > 0) {
      this.logger.warn('invocations not counted in the metrics: too many minutes waiting to be written', { dropped: this.dropped });
      this.dropped = 0;
    }
    const current = minuteOf(Date.now());
    // Snapshot the counts: samples recorded while the upsert runs mark their bucket dirty again.
    const due = [...this.buckets.entries()].filter(([, b]) => b.dirty);
    for (const [, b] of due) b.dirty = false;
    const rows = due.map(([key, b]) => ({ key, row: rowOf(b, this.source) }));
    let failed = false;
    for (let i = 0; i < rows.length; i += this.batchRows) {
      const batch = rows.slice(i, i + this.batchRows);
      const unwritten = await this.upsert(batch);
      if (unwritten.length > 0) {
        failed = true;
        for (const key of unwritten) {
          const b = this.buckets.get(key);
          if (b) b.dirty = true;
        }
      }
    }
    // A past minute gets no more samples: once written, its bucket is done.
    for (const [key, b] of this.buckets) if (b.minute < current && !b.dirty) this.buckets.delete(key);
    this.floor = Math.max(this.floor, current);
    // the database was out of reach: try again later even if no invocation comes
    if (failed) this.schedule();
  }

  /** The keys of the rows that are still to be written (the database could not be reached). */
  private async upsert(batch: { key: string; row: Record<string, unknown> }[]): Promise<string[]> {
    const write = (rows: Record<string, unknown>[]) =>
      this.db
        .knex('function_metrics')
        .insert(rows)
        .onConflict(['deployment_id', 'minute', 'source'])
        .merge(['requests', 'errors', 'timeouts', 'crashes', 'duration_sum_ms', 'latency']);
    try {
      await write(batch.map((r) => r.row));
      return [];
    } catch {
      // One row whose version was deleted meanwhile (a foreign key) must not cost the batch.
      let lost = 0;
      for (let i = 0; i < batch.length; i++) {
        try {
          await write([batch[i]!.row]);
        } catch (err) {
          if (!isForeignKeyViolation(err)) {
            this.logger.warn('could not write the metrics; retrying', { err });
            return batch.slice(i).map((r) => r.key);
          }
          this.buckets.delete(batch[i]!.key);
          lost++;
        }
      }
      if (lost > 0) this.logger.debug('metrics of deleted versions dropped', { lost });
      return [];
    }
  }

  /** Stops the timer and writes everything counted (at shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

function rowOf(b: Bucket, source: string): Record<string, unknown> {
  return {
    function_id: b.functionId,
    deployment_id: b.deploymentId,
    version: b.version,
    minute: new Date(b.minute).toISOString(),
    source,
    requests: b.requests,
    errors: b.errors,
    timeouts: b.timeouts,
    crashes: b.crashes,
    duration_sum_ms: b.durationSumMs,
    latency: JSON.stringify(b.latency),
  };
}

// ------------------------------------------------------------------------------------- reading

export interface Totals {
  requests: number;
  errors: number;
  timeouts: number;
  crashes: number;
  durationSumMs: number;
  /** counts per bucket of LATENCY_BOUNDS_MS */
  latency: number[];
}

export function emptyTotals(): Totals {
  return { requests: 0, errors: 0, timeouts: 0, crashes: 0, durationSumMs: 0, latency: new Array<number>(LATENCY_BOUNDS_MS.length).fill(0) };
}

/** A stored latency column; a malformed or shorter one adds what it has. */
function parseLatency(text: unknown): number[] {
  try {
    const parsed: unknown = JSON.parse(String(text));
    return Array.isArray(parsed) ? parsed.map((n) => num(n)) : [];
  } catch {
    return [];
  }
}

/** Adds a stored row into `into`. */
function addRow(into: Totals, row: Record<string, unknown>): Totals {
  into.requests += num(row.requests);
  into.errors += num(row.errors);
  into.timeouts += num(row.timeouts);
  into.crashes += num(row.crashes);
  into.durationSumMs += num(row.duration_sum_ms);
  const latency = parseLatency(row.latency);
  for (let i = 0; i < into.latency.length && i < latency.length; i++) into.latency[i]! += latency[i]!;
  return into;
}

const ROW_COLUMNS = ['deployment_id', 'version', 'minute', 'requests', 'errors', 'timeouts', 'crashes', 'duration_sum_ms', 'latency'];

/**
 * A version's figures summed over every process and minute, from the minute `since` (ISO) falls in
 * onwards (all of them without it). Cumulative: a window is two of these subtracted (windowFigures).
 * What processes have not flushed yet (up to METRICS_FLUSH_MS) is not in it.
 */
export async function deploymentTotals(q: Knex | Knex.Transaction, deploymentId: string, since?: string): Promise<Totals> {
  const query = q('function_metrics').where({ deployment_id: deploymentId });
  if (since !== undefined) query.andWhere('minute', '>=', new Date(minuteOf(Date.parse(since))).toISOString());
  const rows: Record<string, unknown>[] = await query.select(ROW_COLUMNS);
  return rows.reduce(addRow, emptyTotals());
}

/**
 * The `q` quantile (0–1) of a latency histogram, interpolated linearly inside its bucket (as
 * Prometheus' histogram_quantile does); in the last, open bucket, its lower bound (15 min). null
 * with no samples.
 */
export function quantileMs(latency: number[], q: number): number | null {
  const total = latency.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let below = 0;
  for (let i = 0; i < latency.length; i++) {
    const count = latency[i] ?? 0;
    if (count > 0 && below + count >= rank) {
      const lower = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1]!;
      const upper = LATENCY_BOUNDS_MS[i] ?? Infinity;
      if (!Number.isFinite(upper)) return lower;
      return round1(lower + ((upper - lower) * Math.max(rank - below, 0)) / count);
    }
    below += count;
  }
  // counts past the known buckets (rows written with more buckets than this process knows)
  return LATENCY_BOUNDS_MS[LATENCY_BOUNDS_MS.length - 2]!;
}

const round1 = (n: number) => Math.round(n * 10) / 10;

export interface WindowFigures {
  requests: number;
  errors: number;
  timeouts: number;
  crashes: number;
  /** errors / requests; 0 without requests */
  errorRate: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

/** What happened between `baseline` and `now` (two cumulative totals of one version). */
export function windowFigures(now: Totals, baseline: Totals | null): WindowFigures {
  const base = baseline ?? emptyTotals();
  // Never negative: a baseline can exceed a later read when retention pruned old minutes in between.
  const diff = (a: number, b: number) => Math.max(0, a - b);
  const latency = now.latency.map((n, i) => diff(n, base.latency[i] ?? 0));
  const requests = diff(now.requests, base.requests);
  const errors = Math.min(diff(now.errors, base.errors), requests);
  return {
    requests,
    errors,
    timeouts: diff(now.timeouts, base.timeouts),
    crashes: diff(now.crashes, base.crashes),
    errorRate: requests > 0 ? errors / requests : 0,
    p50Ms: quantileMs(latency, 0.5),
    p99Ms: quantileMs(latency, 0.99),
  };
}

// -------------------------------------------------------------------------------- the API's view

export interface MetricsPoint {
  /** the minute's start (ISO, UTC) */
  minute: string;
  requests: number;
  errors: number;
  timeouts: number;
  crashes: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface VersionMetrics {
  version: number;
  deploymentId: string;
  totals: { requests: number; errors: number; timeouts: number; crashes: number; errorRate: number; p50Ms: number | null; p99Ms: number | null; avgMs: number | null };
  /** the minutes that had invocations, oldest first (minutes without any are left out) */
  series: MetricsPoint[];
}

/**
 * A function's figures over the last `minutes` minutes (the current one included), per version,
 * newest version first: the versions that ran in that time, or the one asked for (even idle).
 */
export async function functionMetrics(
  db: Db,
  functionId: string,
  opts: { minutes: number; deployment?: { id: string; version: number }; now?: number },
): Promise<VersionMetrics[]> {
  const since = new Date(minuteOf(opts.now ?? Date.now()) - (opts.minutes - 1) * MINUTE_MS).toISOString();
  const q = db.knex('function_metrics').where({ function_id: functionId }).andWhere('minute', '>=', since);
  if (opts.deployment) q.andWhere({ deployment_id: opts.deployment.id });
  const rows: Record<string, unknown>[] = await q.select(ROW_COLUMNS);

  const versions = new Map<string, { version: number; totals: Totals; minutes: Map<string, Totals> }>();
  if (opts.deployment) versions.set(opts.deployment.id, { version: opts.deployment.version, totals: emptyTotals(), minutes: new Map() });
  for (const row of rows) {
    const id = String(row.deployment_id);
    let v = versions.get(id);
    if (!v) versions.set(id, (v = { version: num(row.version), totals: emptyTotals(), minutes: new Map() }));
    addRow(v.totals, row);
    const minute = toIso(row.minute)!;
    let m = v.minutes.get(minute);
    if (!m) v.minutes.set(minute, (m = emptyTotals()));
    addRow(m, row);
  }
  return [...versions.entries()]
    .sort(([, a], [, b]) => b.version - a.version)
    .map(([deploymentId, v]) => {
      const w = windowFigures(v.totals, null);
      return {
        version: v.version,
        deploymentId,
        totals: { ...w, avgMs: v.totals.requests > 0 ? round1(v.totals.durationSumMs / v.totals.requests) : null },
        series: [...v.minutes.entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([minute, t]) => {
            const f = windowFigures(t, null);
            return { minute, requests: f.requests, errors: f.errors, timeouts: f.timeouts, crashes: f.crashes, p50Ms: f.p50Ms, p99Ms: f.p99Ms };
          }),
      };
    });
}

export interface RecentCounts {
  requests: number;
  /** as isError counts them: errors, timeouts, crashes and 5xx answers */
  errors: number;
}

/**
 * Each of a user's functions' requests and errors over the last hour (every version and serving
 * process), in one grouped query for the whole list: minutes from now − 60 min on, the current one
 * included (as GET …/metrics?minutes=60). Functions without any are absent from the map.
 */
export async function lastHourByFunction(db: Db, userId: string, now = Date.now()): Promise<Map<string, RecentCounts>> {
  const since = new Date(now - 60 * MINUTE_MS).toISOString();
  const rows: { function_id: string; requests: unknown; errors: unknown }[] = await db
    .knex('function_metrics as m')
    .join('functions as f', 'f.id', 'm.function_id')
    .where('f.user_id', userId)
    .andWhere('m.minute', '>=', since)
    .groupBy('m.function_id')
    .select('m.function_id')
    .sum({ requests: 'm.requests', errors: 'm.errors' });
  const counts = new Map<string, RecentCounts>();
  for (const r of rows) {
    const requests = num(r.requests);
    counts.set(r.function_id, { requests, errors: Math.min(num(r.errors), requests) });
  }
  return counts;
}

/** Retention: drops the buckets of minutes older than `days` days; how many rows went. */
export function pruneMetrics(db: Db, days: number, now = Date.now()): Promise<number> {
  const cutoff = new Date(now - days * 24 * 60 * MINUTE_MS).toISOString();
  return db.knex('function_metrics').where('minute', '<', cutoff).delete();
}
