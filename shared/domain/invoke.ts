// Invocation in the serving process: find the version to run (the live one from the routing cache,
// or an explicitly named built one), run it on a warm instance, record what it printed off the
// request path. Also keeps the serving side in step with the control plane: an activation or a
// rollback drops the cached route and pre-warms the new live version.
import { randomUUID } from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { num } from '../db/dialect.ts';
import { PgListener } from '../db/listener.ts';
import { AppError, driverMismatch, errors } from '../errors.ts';
import type { Platform } from '../platform.ts';
import {
  CapacityError,
  InstanceManager,
  ShuttingDownError,
  type ExchangeOutcome,
  type ExchangeWork,
  type InstanceInfo,
  type InstanceTarget,
  type PoolSettings,
} from '../runtime/pool.ts';
import { ArtifactMissingError } from '../runtime/protocol.ts';
import type { RuntimeDriver } from '../runtime/types.ts';
import { requestRebuild } from './build-queue.ts';
import { findDeploymentByVersion } from './deployments.ts';
import { recordEvent } from './events.ts';
import { FUNCTION_CHANGED_CHANNEL, onFunctionChangedLocally, type KnownRouteChange } from './function-changes.ts';
import { InvocationRecorder, type InvocationRecord } from './invocation-log.ts';
import { LiveRoutes, type LiveDeployment, type LiveRoute } from './live-routes.ts';
import { MetricsRecorder } from './metrics.ts';
import { chooseDeployment } from './traffic-choice.ts';
import { BUILT_STATUS } from './model.ts';
import { versionDriver, type DriverName } from './version-driver.ts';
import { instanceQuotaError } from './quotas.ts';
import { effectiveSettings, instanceVariables, parseStoredConfig } from './release-config.ts';
import { currentRequestId } from '../observability/request-context.ts';

/** Which version a request asks for: a pinned one, a tag, or the split's choice (with a traffic key for a sticky split). */
export interface TrafficPick {
  version?: number;
  tag?: string;
  trafficKey?: string | null;
}

export interface InvocationResult {
  result: unknown;
  version: number;
  deploymentId: string;
  requestId: string;
  durationMs: number;
}

function imageRebuilding(version: number, deploymentId: string): AppError {
  return new AppError(
    'image_rebuilding',
    `the image of version ${version} is missing and is being rebuilt from its archive; retry shortly`,
    { version, deploymentId },
    5,
  );
}

/**
 * The pool settings of a version: what its configuration sets, the platform's defaults for the
 * rest, and its environment with its secrets opened (they exist in the clear only there).
 */
export function poolSettings(p: Pick<Platform, 'config' | 'secrets'>, target: Pick<InstanceTarget, 'functionId' | 'config'> = { functionId: '' }): PoolSettings {
  const { config } = p;
  const stored = target.config ?? {};
  const s = effectiveSettings(stored, config);
  return {
    maxInstances: s.maxInstances,
    concurrency: s.concurrency,
    queueMs: config.instances.queueMs,
    queueMax: config.instances.queueMax,
    idleMs: config.instances.idleMs,
    timeoutMs: s.timeoutMs,
    startTimeoutMs: config.runtime.startTimeoutMs,
    memoryMb: s.memoryMb,
    env: instanceVariables(stored, target.functionId, p.secrets),
    network: s.network,
    minInstances: s.minInstances,
  };
}

export class Invoker {
  readonly manager: InstanceManager;
  readonly routes: LiveRoutes;
  readonly recorder: InvocationRecorder;
  /** per-version counts and latencies (canaries are judged on them), written off the request path */
  readonly metrics: MetricsRecorder;
  private feed?: PgListener;
  private unsubscribe?: () => void;
  /** closed: a change heard before is not followed any more (its database may be gone) */
  private closed = false;
  /** the owner of each function this process has served: MAX_INSTANCES_PER_USER counts by owner */
  private readonly owners = new Map<string, string>();
  private readonly untrackInstances: () => void;

  constructor(
    private readonly p: Platform,
    private readonly driver: RuntimeDriver,
  ) {
    this.manager = new InstanceManager(driver.instances, {
      maxTotal: p.config.instances.maxTotal,
      settings: (target) => poolSettings(p, target),
      logger: p.logger,
      mayStart: (target) => this.instanceQuota(target.functionId),
      onStartEnded: (how, outcome) => p.metrics.instanceStarts.inc({ how, outcome }),
      onCrashLoop: (loop) => {
        recordEvent(p.db.knex, {
          functionId: loop.target.functionId,
          deploymentId: loop.target.deploymentId,
          version: loop.target.version,
          event: 'crash_loop',
          message: `version ${loop.target.version} is crash-looping: ${loop.crashes} instance crashes in ${loop.windowMs / 1000} s; last: ${loop.lastError}`,
        }).catch((err) => p.logger.warn('could not record a crash loop', { err }));
      },
    });
    this.routes = new LiveRoutes(p.db, () => this.feed?.healthy ?? false);
    this.recorder = new InvocationRecorder(p.db, p.logger);
    this.metrics = new MetricsRecorder(p.db, p.logger, { flushMs: p.config.delivery.metricsFlushMs });
    this.untrackInstances = p.metrics.trackInstances(() => this.manager.stateCounts());
  }

  /** Removes what a killed predecessor left running, and follows changes to functions. */
  async start(): Promise<void> {
    await this.driver.instances.sweepOrphans().catch((err) => this.p.logger.warn('the orphan sweep failed', { err }));
    this.unsubscribe = onFunctionChangedLocally((id, change) => this.onChanged(id, change));
    await this.warmKeptVersions().catch((err) => this.p.logger.warn('could not start the instances live versions keep warm', { err }));
    const db = this.p.config.database;
    if (db.client === 'pg') {
      this.feed = new PgListener({
        url: db.url,
        channels: [FUNCTION_CHANGED_CHANNEL],
        // A change committed on this process's own pool was announced locally at commit: its
        // echo would read the route a second time for nothing.
        onNotification: (_channel, id, senderPid) => {
          if (id && !this.p.db.ownsBackend?.(senderPid)) this.onChanged(id);
        },
        // changes announced while the feed was down were missed
        onReset: () => this.routes.clear(),
        logger: this.p.logger,
      });
      await this.feed.start();
    }
  }

  /** Live versions whose configuration keeps instances warm (minInstances) get them at start. */
  private async warmKeptVersions(): Promise<void> {
    const rows = await this.p.db
      .knex('function_deployments')
      .where({ is_active: true, status: BUILT_STATUS })
      .where('config', 'like', '%minInstances%')
      .select('function_id', 'config');
    for (const row of rows) {
      if (effectiveSettings(parseStoredConfig(row.config), this.p.config).minInstances > 0) this.onChanged(row.function_id);
    }
  }

  /** A function changed (possibly elsewhere): drop its route (or take the change as it is known), and warm what is live now. */
  private onChanged(functionId: string, change?: KnownRouteChange): void {
    if (change) this.routes.switchLive(functionId, change.live, change.intent);
    else this.routes.invalidate(functionId);
    // Read the new route once the current turn is over: the request that made the change answers
    // first (its response is being written in this turn), the pre-warm follows right after.
    setImmediate(() => this.followChange(functionId));
  }

  /** The function's new route: its instances follow it (kept warm, pre-warmed, or dropped). */
  private followChange(functionId: string): void {
    if (this.closed) return;
    void this.routes
      .get(functionId)
      .then((route) => {
        if (!route) {
          // deleted: its instances and its metric series go
          this.owners.delete(functionId);
          this.p.metrics.forgetFunction(functionId);
          return this.manager.dropFunction(functionId);
        }
        this.owners.set(functionId, route.userId);
        if (route.live?.status !== BUILT_STATUS || route.live.driver !== this.driver.name) return;
        const { deploymentId, version, imageTag, config } = route.live;
        this.manager.keepWarm({ functionId, deploymentId, version, imageTag, config }, effectiveSettings(config, this.p.config).minInstances);
        // a candidate taking traffic is warm before its first request too
        const c = route.candidate;
        if (c && c.percent > 0 && c.status === BUILT_STATUS && c.driver === this.driver.name) {
          this.manager.prewarm({ functionId, deploymentId: c.deploymentId, version: c.version, imageTag: c.imageTag, config: c.config });
        }
      })
      .catch((err) => this.p.logger.warn('could not follow a change to a function', { functionId, err }));
  }

  /** MAX_INSTANCES_PER_USER: the owner's instances in this process, over all their functions. */
  private instanceQuota(functionId: string): Error | null {
    const owner = this.owners.get(functionId);
    if (owner === undefined || this.p.config.quotas.maxInstances === null) return null;
    let running = 0;
    for (const [fid, uid] of this.owners) if (uid === owner) running += this.manager.list(fid).length;
    return instanceQuotaError(this.p.config.quotas, running);
  }

  /** What a version to run is, checked against the caller (another user's function is a 404). */
  private async resolveTarget(userId: string, functionId: string, pick: TrafficPick): Promise<InstanceTarget> {
    const route = await this.routes.get(functionId);
    if (!route || route.userId !== userId) throw errors.functionNotFound();
    return this.targetOf(route, pick);
  }

  /**
   * The version of a function to run: a named built one, a tagged one, or the one the traffic
   * split picks (the live version, or the candidate for its share).
   */
  async targetOf(route: LiveRoute, pick: TrafficPick = {}): Promise<InstanceTarget> {
    const { functionId } = route;
    this.owners.set(functionId, route.userId);
    if (pick.version !== undefined) return resolveVersion(this.p.db, functionId, pick.version, this.driver.name);
    let chosen: LiveDeployment | null;
    if (pick.tag !== undefined) {
      chosen = route.tags.get(pick.tag) ?? null;
      if (!chosen) throw errors.tagNotFound(pick.tag);
      if (chosen.status !== BUILT_STATUS && chosen.status !== 'building') throw errors.versionNotBuilt(chosen.version, chosen.status);
    } else {
      chosen = chooseDeployment(route, pick.trafficKey ?? null)?.deployment ?? null;
      if (!chosen) throw errors.noActiveDeployment();
    }
    if (chosen.status === 'building') throw imageRebuilding(chosen.version, chosen.deploymentId);
    if (chosen.driver !== this.driver.name) throw driverMismatch(chosen.version, chosen.driver, this.driver.name);
    return { functionId, deploymentId: chosen.deploymentId, version: chosen.version, imageTag: chosen.imageTag, config: chosen.config };
  }

  /**
   * Runs `work` on a warm instance of `target`. Capacity, shutdown and a missing artifact become
   * the platform's errors here; how the work itself ended is the outcome.
   */
  async exchange<T>(target: InstanceTarget, requestId: string, work: ExchangeWork<T>): Promise<ExchangeOutcome<T>> {
    try {
      const outcome = await this.manager.exchange(target, requestId, work);
      // An instance that could not start may have found its files half gone: look before blaming it.
      if (!outcome.ok && outcome.instanceId === null && !(await this.driver.hasArtifact(target))) {
        throw new ArtifactMissingError(outcome.message);
      }
      return outcome;
    } catch (err) {
      if (err instanceof CapacityError) {
        throw new AppError('capacity_exceeded', err.message, { version: target.version }, err.retryAfterSeconds);
      }
      if (err instanceof ShuttingDownError) throw errors.unavailable(err.message);
      if (!(err instanceof ArtifactMissingError)) throw err;
      // Removed by hand (or lost with a node): rebuild it from its archive; callers retry.
      this.p.logger.warn('artifact missing at invocation; rebuilding', { functionId: target.functionId, version: target.version, err });
      await requestRebuild(this.p.db, { ...target, why: err.message });
      throw imageRebuilding(target.version, target.deploymentId);
    }
  }

  /** Keeps what an invocation printed and how it ended (written off the request path). */
  record(r: InvocationRecord): void {
    this.recorder.record(r);
    this.metrics.record(r);
    this.p.metrics.observeInvocation(r);
  }

  /** The error a failed exchange is, as the platform reports it. */
  failure(target: InstanceTarget, requestId: string, outcome: { kind: 'error' | 'timeout' | 'crashed'; message: string }): AppError {
    const details = { version: target.version, deploymentId: target.deploymentId, requestId };
    if (outcome.kind === 'timeout') {
      return new AppError('function_timeout', `function did not finish within ${effectiveSettings(target.config ?? {}, this.p.config).timeoutMs} ms`, details);
    }
    if (outcome.kind === 'crashed') return new AppError('function_crashed', outcome.message, details);
    return new AppError('function_error', outcome.message, details);
  }

  /** `body` is the event as JSON text (already checked to parse). */
  async invoke(input: { userId: string; functionId: string; body: string } & TrafficPick): Promise<InvocationResult> {
    const target = await this.resolveTarget(input.userId, input.functionId, input);
    // the API request's own id (its X-Request-Id): its log lines and the record share it
    const requestId = currentRequestId() ?? randomUUID();
    const out = await this.exchange(target, requestId, (channel, signal) => channel.invoke(requestId, input.body, signal));
    const reply = out.ok ? out.value : null;
    const outcome = !out.ok ? out : reply!.ok ? null : { kind: 'error' as const, message: reply!.error };
    this.record({
      ...target,
      requestId,
      outcome: outcome ? outcome.kind : 'ok',
      durationMs: out.durationMs,
      logs: out.ok ? reply!.logs : out.logs,
      error: outcome ? outcome.message : null,
      status: outcome ? (outcome.kind === 'timeout' ? 504 : 502) : 200,
    });
    if (outcome) throw this.failure(target, requestId, outcome);
    return { result: reply!.ok ? reply!.result : null, version: target.version, deploymentId: target.deploymentId, requestId, durationMs: out.durationMs };
  }

  async listInstances(userId: string, functionId: string): Promise<InstanceInfo[]> {
    const route = await this.routes.get(functionId);
    if (!route || route.userId !== userId) throw errors.functionNotFound();
    return this.manager.list(functionId);
  }

  /** Shutdown: in-flight invocations get `graceMs`, then every instance is stopped; records are written. */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    this.untrackInstances();
    await this.feed?.stop();
    await this.manager.close(graceMs);
    await this.recorder.close();
    await this.metrics.close();
  }
}

/** A named version: it must be built (a version being restored answers 503 meanwhile). */
async function resolveVersion(db: Db, functionId: string, version: number, running: DriverName): Promise<InstanceTarget> {
  const dep = await findDeploymentByVersion(db.knex, functionId, version);
  if (!dep) throw errors.versionNotFound(version);
  if (dep.status === 'building' && dep.image_removed_at) throw imageRebuilding(num(dep.version), dep.id);
  if (dep.status !== BUILT_STATUS) throw errors.versionNotBuilt(version, dep.status);
  const builtBy = versionDriver(dep);
  if (builtBy !== running) throw driverMismatch(version, builtBy, running);
  return { functionId, deploymentId: dep.id, version: num(dep.version), imageTag: dep.image_tag, config: parseStoredConfig(dep.config) };
}
