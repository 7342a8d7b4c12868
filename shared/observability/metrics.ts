// Prometheus metrics of one platform (prom-client), in a registry of its own: a process holding
// several platforms (the tests) keeps their counts apart, and `npm start` (API and runner in one
// process, one platform) serves everything from one registry at GET /metrics.
//
// Label values are bounded: route templates (never raw paths), function ids and versions (never
// names or anything a caller typed), and small fixed sets (outcomes, states, reasons).
import type { CleanupSummary } from '../domain/retention.ts';
import client from 'prom-client';
import type { Db } from '../db/knex.ts';
import { queueSnapshot } from './queue.ts';

/** Seconds; from a fast API answer to a slow build. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BUILD_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800];
const INVOCATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** How a build attempt ended, as runner/build-job.ts sees it. */
export type BuildOutcome = 'succeeded' | 'failed' | 'retrying' | 'lost' | 'handed_back';

/** The part of a cleanup run's summary (shared/domain/retention.ts CleanupSummary) that is counted. */
/** What a cleanup run reports, as far as the metrics count it (the summary itself is retention.ts's). */
export type CleanupCounts = Pick<
  CleanupSummary,
  | 'skipped' | 'versionsArchived' | 'archivesDeleted' | 'objectsRemoved' | 'imagesRemoved' | 'failedArchivesRemoved'
  | 'uploadsExpired' | 'invocationLogsPruned' | 'metricsPruned' | 'workDirsRemoved' | 'uploadTempFilesRemoved'
  | 'bytesFreed' | 'errors' | 'durationMs'
>;

const CLEANUP_REMOVED: (keyof CleanupCounts)[] = [
  'versionsArchived',
  'archivesDeleted',
  'objectsRemoved',
  'imagesRemoved',
  'failedArchivesRemoved',
  'uploadsExpired',
  'invocationLogsPruned',
  'metricsPruned',
  'workDirsRemoved',
  'uploadTempFilesRemoved',
];

/**
 * Invocation series are kept for this many versions of a function, the ones invoked most recently:
 * every deploy adds a version, and a long-running process would otherwise keep the series of every
 * version it ever served. A version invoked again after its series were dropped starts them over,
 * which Prometheus reads as a counter reset (rate() and increase() account for it).
 */
export const INVOCATION_VERSIONS_KEPT = 10;
/** Deleted functions remembered, so that an invocation finishing after the delete does not bring their series back. */
const FORGOTTEN_FUNCTIONS_KEPT = 1024;

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** A gauge that reads, at every scrape, the sum of the in-process sources registered with it. */
function summedGauge(registry: client.Registry, name: string, help: string, sources: ReadonlySet<() => number>): void {
  new client.Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      let n = 0;
      for (const source of sources) n += source();
      this.set(n);
    },
  });
}

export class PlatformMetrics {
  readonly registry = new client.Registry();

  readonly httpRequests = new client.Counter({
    name: 'containerpub_http_requests_total',
    help: 'API requests answered, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new client.Histogram({
    name: 'containerpub_http_request_duration_seconds',
    help: 'API request duration from its arrival (its wait for a turn of the event loop included) until the answer head, by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });

  readonly builds = new client.Counter({
    name: 'containerpub_builds_total',
    help: 'build attempts finished by this process, by outcome (succeeded, failed, retrying, lost, handed_back)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly buildDuration = new client.Histogram({
    name: 'containerpub_build_duration_seconds',
    help: 'build attempt duration, by outcome',
    labelNames: ['outcome'] as const,
    buckets: BUILD_BUCKETS,
    registers: [this.registry],
  });

  readonly invocations = new client.Counter({
    name: 'containerpub_invocations_total',
    help: 'invocations served by this process, by function id, version and outcome (ok, error, timeout, crashed, aborted)',
    labelNames: ['function_id', 'version', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly invocationDuration = new client.Histogram({
    name: 'containerpub_invocation_duration_seconds',
    help: 'invocation duration, by function id and version',
    labelNames: ['function_id', 'version'] as const,
    buckets: INVOCATION_BUCKETS,
    registers: [this.registry],
  });

  readonly cleanupRuns = new client.Counter({
    name: 'containerpub_cleanup_runs_total',
    help: 'scheduled retention cleanups, by outcome (completed, skipped: another runner held the lock, failed)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly cleanupRemoved = new client.Counter({
    name: 'containerpub_cleanup_removed_total',
    help: 'what retention cleanups removed, by kind (versions_archived, archives_deleted, images_removed, …)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly cleanupBytesFreed = new client.Counter({
    name: 'containerpub_cleanup_bytes_freed_total',
    help: 'bytes of storage retention cleanups freed',
    registers: [this.registry],
  });
  readonly cleanupDuration = new client.Histogram({
    name: 'containerpub_cleanup_duration_seconds',
    help: 'retention cleanup duration',
    buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 300],
    registers: [this.registry],
  });

  readonly deployGroups = new client.Counter({
    name: 'containerpub_deploy_groups_total',
    help: 'groups of deploys this process committed together on PostgreSQL, by path: planned (from its own last writes, one round trip), read_first (two), alone (refused or failed as a group: each deploy on its own)',
    labelNames: ['path'] as const,
    registers: [this.registry],
  });
  readonly rollbacks = new client.Counter({
    name: 'containerpub_rollbacks_total',
    help: 'rollbacks made through this process, by kind (rollback, approve) and outcome (switched, restoring, already_live)',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly activations = new client.Counter({
    name: 'containerpub_activations_total',
    help: 'versions made live by this process, by reason (build, rollback, promote, approve, …)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly instanceStarts = new client.Counter({
    name: 'containerpub_instance_starts_total',
    help: 'instance starts of this process\'s pools, by how (started; adopted: the instance the version\'s readiness check left ready) and outcome (ready, failed)',
    labelNames: ['how', 'outcome'] as const,
    registers: [this.registry],
  });

  /** the invocation series this process holds: function id → versions (least recently invoked first) → outcomes */
  private readonly invocationSeries = new Map<string, Map<string, Set<string>>>();
  private readonly forgottenFunctions = new Set<string>();

  /** in-process sources of the gauges below (the invoker's pool, the runner's slots) */
  private readonly instanceSources = new Set<() => Record<string, number>>();
  private readonly runningBuildSources = new Set<() => number>();
  private readonly waitingRequestSources = new Set<() => number>();

  constructor(db?: Db) {
    const instanceSources = this.instanceSources;
    const runningBuildSources = this.runningBuildSources;
    const waitingRequestSources = this.waitingRequestSources;
    new client.Gauge({
      name: 'containerpub_instances',
      help: 'warm function instances in this process, by state (starting, idle, busy)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        const totals: Record<string, number> = { starting: 0, idle: 0, busy: 0 };
        for (const source of instanceSources) for (const [state, n] of Object.entries(source())) totals[state] = (totals[state] ?? 0) + n;
        for (const [state, n] of Object.entries(totals)) this.set({ state }, n);
      },
    });
    summedGauge(
      this.registry,
      'containerpub_http_requests_waiting',
      'API requests that arrived and wait for a turn of the event loop to start (the API is saturated while it stays above 0)',
      waitingRequestSources,
    );
    summedGauge(this.registry, 'containerpub_builds_running', 'builds this process is running now', runningBuildSources);
    if (db) {
      // one query answers both gauges; a scrape reads it once
      let pending: Promise<{ depth: number; oldestQueuedAt: string | null } | null> | null = null;
      const snapshot = () =>
        (pending ??= queueSnapshot(db)
          .catch(() => null)
          .finally(() => setTimeout(() => (pending = null), 0)));
      new client.Gauge({
        name: 'containerpub_build_queue_depth',
        help: 'builds waiting for a runner (queued or waiting out a retry backoff), over the whole platform',
        registers: [this.registry],
        async collect() {
          const s = await snapshot();
          if (s) this.set(s.depth);
        },
      });
      new client.Gauge({
        name: 'containerpub_build_queue_oldest_age_seconds',
        help: 'how long the oldest waiting build has been queued (0 when none waits)',
        registers: [this.registry],
        async collect() {
          const s = await snapshot();
          if (s) this.set(s.oldestQueuedAt ? Math.max(0, (Date.now() - Date.parse(s.oldestQueuedAt)) / 1000) : 0);
        },
      });
    }
    client.collectDefaultMetrics({ register: this.registry });
  }

  observeHttp(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }

  observeBuild(outcome: BuildOutcome, seconds: number): void {
    this.builds.inc({ outcome });
    this.buildDuration.observe({ outcome }, seconds);
  }

  observeInvocation(r: { functionId: string; version: number; outcome: string; durationMs: number }): void {
    if (this.forgottenFunctions.has(r.functionId)) return;
    const version = String(r.version);
    this.keepInvocationSeries(r.functionId, version, r.outcome);
    this.invocations.inc({ function_id: r.functionId, version, outcome: r.outcome });
    this.invocationDuration.observe({ function_id: r.functionId, version }, Math.max(0, r.durationMs) / 1000);
  }

  /** Notes the series an invocation adds to, dropping those of the function's least recently invoked version past the bound. */
  private keepInvocationSeries(functionId: string, version: string, outcome: string): void {
    let versions = this.invocationSeries.get(functionId);
    if (!versions) this.invocationSeries.set(functionId, (versions = new Map()));
    const outcomes = versions.get(version) ?? new Set<string>();
    // re-inserted: a Map iterates in insertion order, so the first entry is the least recently invoked
    versions.delete(version);
    versions.set(version, outcomes.add(outcome));
    if (versions.size > INVOCATION_VERSIONS_KEPT) {
      const [oldest, oldestOutcomes] = versions.entries().next().value as [string, Set<string>];
      versions.delete(oldest);
      this.removeInvocationSeries(functionId, oldest, oldestOutcomes);
    }
  }

  private removeInvocationSeries(functionId: string, version: string, outcomes: Set<string>): void {
    for (const outcome of outcomes) this.invocations.remove({ function_id: functionId, version, outcome });
    this.invocationDuration.remove({ function_id: functionId, version });
  }

  /** A function was deleted: its invocation series go, and later invocations of it (still in flight) are not counted. */
  forgetFunction(functionId: string): void {
    const versions = this.invocationSeries.get(functionId);
    this.invocationSeries.delete(functionId);
    for (const [version, outcomes] of versions ?? []) this.removeInvocationSeries(functionId, version, outcomes);
    this.forgottenFunctions.add(functionId);
    if (this.forgottenFunctions.size > FORGOTTEN_FUNCTIONS_KEPT) this.forgottenFunctions.delete(this.forgottenFunctions.values().next().value as string);
  }

  observeCleanup(summary: CleanupCounts | null): void {
    if (!summary) {
      this.cleanupRuns.inc({ outcome: 'failed' });
      return;
    }
    this.cleanupRuns.inc({ outcome: summary.skipped ? 'skipped' : 'completed' });
    if (summary.skipped) return;
    for (const kind of CLEANUP_REMOVED) {
      const n = Number(summary[kind]);
      if (n > 0) this.cleanupRemoved.inc({ kind: snake(kind) }, n);
    }
    if (summary.bytesFreed > 0) this.cleanupBytesFreed.inc(summary.bytesFreed);
    this.cleanupDuration.observe(Math.max(0, summary.durationMs) / 1000);
  }

  /** Counts per state from an instance pool, read at every scrape; returns the unsubscribe function. */
  trackInstances(source: () => Record<string, number>): () => void {
    this.instanceSources.add(source);
    return () => this.instanceSources.delete(source);
  }

  /** An API's requests waiting for a turn (api/http/turns.ts), read at every scrape; returns the unsubscribe function. */
  trackWaitingRequests(source: () => number): () => void {
    this.waitingRequestSources.add(source);
    return () => this.waitingRequestSources.delete(source);
  }

  /** A runner's running builds, read at every scrape; returns the unsubscribe function. */
  trackRunningBuilds(source: () => number): () => void {
    this.runningBuildSources.add(source);
    return () => this.runningBuildSources.delete(source);
  }

  /** The Prometheus text exposition of everything above. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * The metrics of the platform a database handle belongs to: domain code that holds only `db`
 * (activation, rollback) counts through it. Unset for handles opened outside a platform.
 */
const byDb = new WeakMap<Db, PlatformMetrics>();

export function bindMetrics(db: Db, metrics: PlatformMetrics): void {
  byDb.set(db, metrics);
}

export function metricsOf(db: Db): PlatformMetrics | undefined {
  return byDb.get(db);
}
