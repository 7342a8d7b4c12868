// Warm instances: a pool per version, in the process that serves invocations.
//
// - Instances start on demand, serve many invocations, and stop after `idleMs` without work: a
//   version scales to zero.
// - A version has at most `maxInstances`, each running at most `concurrency` invocations at once.
//   Beyond that, requests wait in a FIFO queue (at most `queueMax` of them, each for at most
//   `queueMs`), then get a CapacityError.
// - The host has at most `maxTotal` instances over all versions: to start one more, the least
//   recently used idle instance anywhere is stopped first; with none idle, the request waits.
// - Faults stay inside one instance: an invocation over its timeout kills its instance (the next
//   request starts a fresh one); an instance that dies fails only its own in-flight invocations.
// - An instance counts only once it is ready (GET /ready): a starting one takes no work.
import { ArtifactMissingError, type RuntimeLogger } from './protocol.ts';
import { ChannelError, InstanceChannel, StartError, describeExit, newInstanceId, waitReady } from './instance.ts';
import { readyInstancesOf, type InstanceShape, type ReadyInstances } from './ready-instances.ts';
export { ChannelError, type InstanceChannel } from './instance.ts';
import type { ArtifactRef, InstanceBackend, InstanceExit, RunningInstance } from './types.ts';
import type { StoredConfig } from '../domain/release-config.ts';

/** The pool settings of one version: platform defaults now, per-version configuration later. */
export interface PoolSettings {
  maxInstances: number;
  concurrency: number;
  queueMs: number;
  queueMax: number;
  idleMs: number;
  timeoutMs: number;
  startTimeoutMs: number;
  memoryMb: number;
  /** the version's environment (secrets opened) */
  env?: Record<string, string>;
  network?: 'none' | 'outbound';
  /** instances kept warm while the version is live (see keepWarm) */
  minInstances?: number;
}

/** A built version to run. */
export interface InstanceTarget extends ArtifactRef {
  deploymentId: string;
  /** the configuration it runs with, as stored (shared/domain/release-config.ts) */
  config?: StoredConfig;
}

export type InvokeOutcome = {
  durationMs: number;
  logs: string;
  /** the instance that ran it (null when none could be started) */
  instanceId: string | null;
  /** this invocation waited for an instance to start */
  cold: boolean;
} & (
  | { ok: true; result: unknown }
  /**
   * error: the handler threw (or answered off-protocol); timeout: over `timeoutMs`, its instance
   * was killed; crashed: its instance died under it, or could not start
   */
  | { ok: false; kind: 'error' | 'timeout' | 'crashed'; message: string }
);

/**
 * How one exchange with an instance ended (see InstanceManager.exchange): `value` is what the work
 * produced; timeout and crashed as for invocations.
 */
export type ExchangeOutcome<T> = {
  durationMs: number;
  instanceId: string | null;
  cold: boolean;
} & ({ ok: true; value: T } | { ok: false; kind: 'timeout' | 'crashed'; message: string; logs: string });

/**
 * The work of one exchange: it talks to the instance through `channel`, and must settle (with a
 * ChannelError when the connection breaks or `signal` aborts it) before the slot is given back.
 */
export type ExchangeWork<T> = (channel: InstanceChannel, signal: AbortSignal) => Promise<T>;

/** No capacity within the queue's bounds. */
export class CapacityError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/** The serving process is shutting down. */
export class ShuttingDownError extends Error {}

export interface InstanceInfo {
  id: string;
  functionId: string;
  version: number;
  deploymentId: string;
  state: 'starting' | 'idle' | 'busy';
  startedAt: string;
  lastUsedAt: string | null;
  invocations: number;
}

export interface CrashLoop {
  target: InstanceTarget;
  crashes: number;
  windowMs: number;
  lastError: string;
}

export interface InstanceManagerOptions {
  /** the host-wide cap (MAX_INSTANCES) */
  maxTotal: number;
  settings(target: InstanceTarget): PoolSettings;
  logger?: RuntimeLogger;
  /** told once per window when a version keeps crashing (CRASH_LOOP_COUNT in CRASH_LOOP_WINDOW_MS) */
  onCrashLoop?(loop: CrashLoop): void;
  /**
   * Asked before each new instance: an error refuses the start (a quota the caller keeps). The
   * version's waiters then queue for the instances it has, or, with none, fail with that error.
   */
  mayStart?(target: InstanceTarget): Error | null;
  /** told when a start is over: whether it took the readiness check's instance, and how it ended */
  onStartEnded?(how: 'started' | 'adopted', outcome: 'ready' | 'failed'): void;
}

export const CRASH_LOOP_COUNT = 5;
export const CRASH_LOOP_WINDOW_MS = 60_000;
/** After the connection to an instance breaks, how long its exit status may take to arrive. */
const EXIT_GRACE_MS = 2_000;

type State = 'starting' | 'ready' | 'stopping';

class Instance {
  state: State = 'starting';
  inflight = 0;
  invocations = 0;
  readonly startedAt = new Date();
  lastUsedAt: Date | null = null;
  lastUsedMs = 0;
  idleTimer?: NodeJS.Timeout;
  running?: RunningInstance;
  channel?: InstanceChannel;
  /** why the platform stopped it, for the invocations still running on it */
  stoppedBy?: string;
  /** settles when its start is over (ready, failed, or undone because it was stopped meanwhile) */
  startDone?: Promise<void>;

  constructor(
    readonly id: string,
    readonly pool: VersionPool,
  ) {}
}

interface Waiter {
  resolve(instance: Instance): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
  /** an instance was started for this waiter: it waited for a cold start */
  cold: boolean;
}

class VersionPool {
  readonly instances = new Set<Instance>();
  readonly waiters: Waiter[] = [];
  /** waiting for the host-wide cap to make room */
  blocked = false;
  /** instances kept warm however idle (minInstances of the live version; see keepWarm) */
  floor = 0;

  constructor(
    readonly target: InstanceTarget,
    readonly settings: PoolSettings,
  ) {}

  get starting(): number {
    let n = 0;
    for (const i of this.instances) if (i.state === 'starting') n++;
    return n;
  }
}

export class InstanceManager {
  private readonly pools = new Map<string, VersionPool>();
  /** every instance not yet gone, over all pools (the host-wide cap counts these) */
  private total = 0;
  private inflight = 0;
  private closing = false;
  private readonly idleWaiters = new Set<() => void>();
  /** starts under way: close() waits for them, or an instance stopped mid-start would outlive it */
  private readonly starts = new Set<Promise<void>>();
  /** crash times per deployment, kept apart from the pools (which go when they scale to zero) */
  private readonly crashes = new Map<string, { times: number[]; reportedAt: number }>();

  /** instances this process's readiness checks left ready: a start takes one when it fits */
  private readonly ready: ReadyInstances;
  private readonly endAdoption: () => Promise<void>;

  constructor(
    private readonly backend: InstanceBackend,
    private readonly opts: InstanceManagerOptions,
  ) {
    this.ready = readyInstancesOf(backend);
    this.endAdoption = this.ready.addAdopter();
  }

  /** Runs one invocation on a warm instance of `target` (starting one if need be). */
  async invoke(target: InstanceTarget, input: { requestId: string; body: string }): Promise<InvokeOutcome> {
    const out = await this.exchange(target, input.requestId, (channel, signal) => channel.invoke(input.requestId, input.body, signal));
    const { durationMs, instanceId, cold } = out;
    if (!out.ok) return out;
    const reply = out.value;
    if (reply.ok) return { ok: true, result: reply.result, logs: reply.logs, durationMs, instanceId, cold };
    return { ok: false, kind: 'error', message: reply.error, logs: reply.logs, durationMs, instanceId, cold };
  }

  /**
   * Runs `work` on a warm instance of `target` (starting one if need be), holding one of its
   * concurrency slots until the work settles, within the version's timeout: over it, the work is
   * aborted and the instance replaced. Endpoint requests use it directly (their answer streams).
   */
  async exchange<T>(target: InstanceTarget, requestId: string, work: ExchangeWork<T>): Promise<ExchangeOutcome<T>> {
    if (this.closing) throw new ShuttingDownError('the platform is shutting down');
    const started = performance.now();
    const pool = this.poolFor(target);
    this.inflight++;
    try {
      let acquired: { instance: Instance; cold: boolean };
      try {
        acquired = await this.acquire(pool);
      } catch (err) {
        if (!(err instanceof StartError)) throw err;
        return {
          ok: false,
          kind: 'crashed',
          message: `the instance did not start: ${err.message}`,
          logs: err.logs,
          instanceId: null,
          cold: true,
          durationMs: Math.round(performance.now() - started),
        };
      }
      const { instance, cold } = acquired;
      try {
        return await this.runOn(instance, requestId, work, started, cold);
      } finally {
        this.release(instance);
      }
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const w of this.idleWaiters) w();
    }
  }

  /** Starts one instance of `target` unless it has one: the first request then finds it warm. */
  prewarm(target: InstanceTarget): void {
    if (this.closing) return;
    const pool = this.poolFor(target);
    if (pool.instances.size > 0) return;
    if (this.opts.mayStart?.(target) || !this.makeRoom(pool)) return this.forgetIfEmpty(pool);
    this.startInstance(pool);
  }

  /**
   * Keeps `count` instances of `target` warm (its minInstances while it is live): they never stop
   * for being idle, and one that dies or is evicted is replaced. The function's other versions lose
   * their floor and scale to zero as usual. With a count of 0, one instance is still pre-warmed.
   */
  keepWarm(target: InstanceTarget, count: number): void {
    if (this.closing) return;
    for (const pool of this.pools.values()) {
      if (pool.target.functionId !== target.functionId || pool.target.deploymentId === target.deploymentId || pool.floor === 0) continue;
      pool.floor = 0;
      for (const i of pool.instances) if (i.state === 'ready' && i.inflight === 0 && !i.idleTimer) this.becameIdle(i);
      this.forgetIfEmpty(pool);
    }
    if (count <= 0) return this.prewarm(target);
    const pool = this.poolFor(target);
    pool.floor = count;
    this.replenish(pool);
  }

  /** Starts instances until the pool has its floor (as far as quotas and the host's cap allow). */
  private replenish(pool: VersionPool): void {
    while (!this.closing && pool.instances.size < pool.floor && this.pools.get(pool.target.deploymentId) === pool) {
      if (this.opts.mayStart?.(pool.target) || !this.makeRoom(pool)) return;
      this.startInstance(pool);
    }
  }

  /** How many instances of every function are starting, idle and busy (the metrics read it at each scrape). */
  stateCounts(): Record<InstanceInfo['state'], number> {
    const counts = { starting: 0, idle: 0, busy: 0 };
    for (const pool of this.pools.values()) {
      for (const i of pool.instances) {
        if (i.state === 'stopping') continue;
        counts[i.state === 'starting' ? 'starting' : i.inflight > 0 ? 'busy' : 'idle']++;
      }
    }
    return counts;
  }

  /** The instances of one function in this process. */
  list(functionId: string): InstanceInfo[] {
    const out: InstanceInfo[] = [];
    for (const pool of this.pools.values()) {
      if (pool.target.functionId !== functionId) continue;
      for (const i of pool.instances) {
        if (i.state === 'stopping') continue;
        out.push({
          id: i.id,
          functionId: pool.target.functionId,
          version: pool.target.version,
          deploymentId: pool.target.deploymentId,
          state: i.state === 'starting' ? 'starting' : i.inflight > 0 ? 'busy' : 'idle',
          startedAt: i.startedAt.toISOString(),
          lastUsedAt: i.lastUsedAt?.toISOString() ?? null,
          invocations: i.invocations,
        });
      }
    }
    return out.sort((a, b) => b.version - a.version || a.startedAt.localeCompare(b.startedAt));
  }

  /** Stops every instance of a function (it was deleted); its waiting requests fail. */
  async dropFunction(functionId: string): Promise<void> {
    const stops: Promise<void>[] = [];
    for (const pool of [...this.pools.values()]) {
      if (pool.target.functionId !== functionId) continue;
      for (const w of pool.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new ShuttingDownError('the function was deleted'));
      }
      for (const i of pool.instances) {
        stops.push(this.stop(i, 'the function was deleted'));
        // one still starting is gone only once its start has noticed: its container or process
        // must not outlive the deletion (nor pull back an image being removed)
        if (i.startDone) stops.push(i.startDone);
      }
      this.pools.delete(pool.target.deploymentId);
    }
    await Promise.all(stops);
  }

  get size(): number {
    return this.total;
  }

  /**
   * Shutdown: takes no new invocations, lets in-flight ones finish for up to `graceMs`, then stops
   * every instance and waits until they are gone.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const parkedGone = this.endAdoption();
    if (this.inflight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, graceMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.idleWaiters.add(done);
      });
    }
    const stops: Promise<void>[] = [];
    for (const pool of this.pools.values()) {
      for (const w of pool.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new ShuttingDownError('the platform is shutting down'));
      }
      for (const i of pool.instances) stops.push(this.stop(i, 'the platform is shutting down'));
    }
    await Promise.all([...stops, ...this.starts, parkedGone]);
    this.pools.clear();
  }

  // ---------------------------------------------------------------- pools and capacity

  private poolFor(target: InstanceTarget): VersionPool {
    let pool = this.pools.get(target.deploymentId);
    if (!pool) {
      pool = new VersionPool(target, this.opts.settings(target));
      this.pools.set(target.deploymentId, pool);
    }
    return pool;
  }

  /** A pool with no instance and nobody waiting is forgotten (its settings are read again). */
  private forgetIfEmpty(pool: VersionPool): void {
    if (pool.instances.size === 0 && pool.waiters.length === 0 && pool.floor === 0 && this.pools.get(pool.target.deploymentId) === pool) {
      this.pools.delete(pool.target.deploymentId);
    }
  }

  private acquire(pool: VersionPool): Promise<{ instance: Instance; cold: boolean }> {
    const free = this.freeInstance(pool);
    if (free && pool.waiters.length === 0) {
      this.take(free);
      return Promise.resolve({ instance: free, cold: false });
    }
    const { settings } = pool;
    if (pool.waiters.length >= settings.queueMax) {
      return Promise.reject(this.capacityError(pool, `${pool.waiters.length} requests are already waiting`));
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        cold: false,
        resolve: (instance) => resolve({ instance, cold: waiter.cold }),
        reject,
      };
      this.armQueueTimer(pool, waiter, settings.queueMs);
      pool.waiters.push(waiter);
      this.scale(pool);
    });
  }

  /** A waiter gives up after `ms` with a CapacityError. */
  private armQueueTimer(pool: VersionPool, waiter: Waiter, ms: number): void {
    clearTimeout(waiter.timer);
    waiter.timer = setTimeout(() => {
      const at = pool.waiters.indexOf(waiter);
      if (at === -1) return;
      pool.waiters.splice(at, 1);
      waiter.reject(this.capacityError(pool, `no instance was free within ${pool.settings.queueMs} ms`));
      this.forgetIfEmpty(pool);
    }, ms);
  }

  private capacityError(pool: VersionPool, why: string): CapacityError {
    const { maxInstances, concurrency } = pool.settings;
    return new CapacityError(
      `version ${pool.target.version} is at capacity (${maxInstances} instances × ${concurrency} at once): ${why}`,
      Math.max(1, Math.ceil(pool.settings.queueMs / 1000)),
    );
  }

  /** A ready instance with a free slot: the busiest that still has room, then the most recently used. */
  private freeInstance(pool: VersionPool): Instance | null {
    let best: Instance | null = null;
    for (const i of pool.instances) {
      if (i.state !== 'ready' || i.inflight >= pool.settings.concurrency) continue;
      if (!best || i.inflight > best.inflight || (i.inflight === best.inflight && i.lastUsedMs > best.lastUsedMs)) best = i;
    }
    return best;
  }

  private take(instance: Instance): void {
    instance.inflight++;
    clearTimeout(instance.idleTimer);
    instance.idleTimer = undefined;
  }

  /** Hands free slots to waiters, in order. */
  private dispatch(pool: VersionPool): void {
    while (pool.waiters.length > 0) {
      const free = this.freeInstance(pool);
      if (!free) break;
      const waiter = pool.waiters.shift()!;
      clearTimeout(waiter.timer);
      this.take(free);
      waiter.resolve(free);
    }
  }

  /** Starts as many instances as the waiters need, within the version's and the host's limits. */
  private scale(pool: VersionPool): void {
    const { concurrency, maxInstances } = pool.settings;
    let coming = pool.starting * concurrency;
    while (pool.waiters.length > coming && pool.instances.size < maxInstances) {
      const refused = this.opts.mayStart?.(pool.target);
      if (refused) {
        if (pool.instances.size === 0) {
          for (const w of pool.waiters.splice(0)) {
            clearTimeout(w.timer);
            w.reject(refused);
          }
          this.forgetIfEmpty(pool);
        }
        break;
      }
      if (!this.makeRoom(pool)) {
        pool.blocked = true;
        break;
      }
      this.startInstance(pool);
      coming += concurrency;
    }
    if (pool.instances.size < maxInstances && pool.waiters.length > coming) pool.blocked = true;
    else pool.blocked = false;
    // The waiters that instances under way will serve (FIFO) wait for those starts: a start is
    // bounded by its own timeout (a failed start fails them), so the queue's shorter wait no
    // longer applies to them. That includes a pre-warm a request found starting.
    for (const w of pool.waiters.slice(0, coming)) {
      if (w.cold) continue;
      w.cold = true;
      this.armQueueTimer(pool, w, pool.settings.startTimeoutMs + pool.settings.queueMs);
    }
  }

  /** Room for one more instance on this host, stopping the least recently used idle one if need be. */
  private makeRoom(pool: VersionPool): boolean {
    if (this.total < this.opts.maxTotal) return true;
    let lru: Instance | null = null;
    for (const p of this.pools.values()) {
      for (const i of p.instances) {
        if (i.state !== 'ready' || i.inflight > 0) continue;
        if (p === pool && p.waiters.length > 0) continue; // it is about to serve them
        if (!lru || i.lastUsedMs < lru.lastUsedMs) lru = i;
      }
    }
    if (!lru) return false;
    this.opts.logger?.info('stopping the least recently used idle instance to make room', {
      instanceId: lru.id,
      functionId: lru.pool.target.functionId,
      version: lru.pool.target.version,
      maxInstances: this.opts.maxTotal,
    });
    // quiet: the caller is itself making room; no other pool may take the slot meanwhile
    void this.stop(lru, 'evicted to make room for another version', { quiet: true });
    return this.total < this.opts.maxTotal;
  }

  /** Capacity was freed somewhere: pools waiting on the host-wide cap try again, oldest first. */
  private unblock(): void {
    for (const pool of this.pools.values()) {
      if (pool.blocked && pool.waiters.length > 0) {
        this.scale(pool);
        if (pool.blocked) return;
      }
    }
  }

  // ---------------------------------------------------------------- instance lifecycle

  private startInstance(pool: VersionPool): void {
    const { settings, target } = pool;
    const shape: InstanceShape = {
      functionId: target.functionId,
      deploymentId: target.deploymentId,
      version: target.version,
      imageTag: target.imageTag,
      memoryMb: settings.memoryMb,
      env: settings.env,
      network: settings.network,
    };
    // the instance the version's readiness check left ready in this process, if it fits: it is
    // checked for readiness again below (it may have died since), like any start
    const adopted = this.ready.take(shape);
    const instance = new Instance(adopted?.id ?? newInstanceId(), pool);
    pool.instances.add(instance);
    this.total++;
    const start = (async () => {
      let running: RunningInstance | undefined;
      try {
        running = adopted ?? (await this.backend.start({ ...shape, instanceId: instance.id }));
        instance.running = running;
        void running.exited.then((exit) => this.onExit(instance, exit));
        if (instance.state === 'stopping') {
          await running.kill();
          return;
        }
        await waitReady(running, settings.startTimeoutMs, settings.memoryMb);
        if ((instance.state as State) === 'stopping') return;
        instance.channel = new InstanceChannel(running.socketPath, settings.concurrency);
        instance.state = 'ready';
        this.opts.onStartEnded?.(adopted ? 'adopted' : 'started', 'ready');
        instance.lastUsedMs = performance.now();
        this.dispatch(pool);
        if (instance.inflight === 0) this.becameIdle(instance);
      } catch (err) {
        if (instance.state === 'stopping') return; // stopped on purpose while it started
        this.opts.onStartEnded?.(adopted ? 'adopted' : 'started', 'failed');
        const failure =
          err instanceof StartError || err instanceof ArtifactMissingError
            ? err
            : new StartError((err as Error).message, running?.log() ?? '');
        this.opts.logger?.warn('an instance did not start', {
          functionId: target.functionId,
          version: target.version,
          instanceId: instance.id,
          error: failure.message,
        });
        if (failure instanceof StartError) this.countCrash(pool.target, failure.message);
        // The version cannot start now: every waiter would wait for the same failure (and must
        // not be handed to a replacement start when this one leaves the pool).
        for (const w of pool.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(failure);
        }
        await this.stop(instance, 'it did not start');
      }
    })();
    instance.startDone = start;
    this.starts.add(start);
    void start.finally(() => this.starts.delete(start));
  }

  private becameIdle(instance: Instance): void {
    const pool = instance.pool;
    // another version waits for the host-wide cap: this idle instance makes room for it
    for (const p of this.pools.values()) {
      if (p !== pool && p.blocked && p.waiters.length > 0) {
        void this.stop(instance, 'evicted to make room for another version');
        this.unblock();
        return;
      }
    }
    clearTimeout(instance.idleTimer);
    instance.idleTimer = undefined;
    // within the version's floor it stays, idle or not (keepWarm re-arms this when the floor drops)
    if (this.readyCount(pool) <= pool.floor) return;
    instance.idleTimer = setTimeout(() => {
      instance.idleTimer = undefined;
      if (instance.state !== 'ready' || instance.inflight > 0) return;
      if (this.readyCount(pool) <= pool.floor) return;
      void this.stop(instance, 'idle');
    }, pool.settings.idleMs);
    instance.idleTimer.unref();
  }

  private readyCount(pool: VersionPool): number {
    let n = 0;
    for (const i of pool.instances) if (i.state === 'ready') n++;
    return n;
  }

  private release(instance: Instance): void {
    instance.inflight--;
    instance.invocations++;
    instance.lastUsedAt = new Date();
    instance.lastUsedMs = performance.now();
    if (instance.state !== 'ready') return;
    const pool = instance.pool;
    this.dispatch(pool);
    if (instance.inflight === 0) this.becameIdle(instance);
  }

  /** Kills an instance and takes it out of its pool at once; resolves once it is gone. */
  private async stop(instance: Instance, reason: string, opts: { quiet?: boolean } = {}): Promise<void> {
    if (instance.state === 'stopping') {
      await instance.running?.kill();
      return;
    }
    instance.state = 'stopping';
    instance.stoppedBy = reason;
    clearTimeout(instance.idleTimer);
    this.removeFromPool(instance, opts);
    instance.channel?.close();
    await instance.running?.kill();
  }

  /** `quiet`: free the slot without handing it to anyone (the caller takes it). */
  private removeFromPool(instance: Instance, opts: { quiet?: boolean } = {}): void {
    const pool = instance.pool;
    if (!pool.instances.delete(instance)) return;
    this.total--;
    if (!opts.quiet) {
      // a slot freed on this host, and this pool may need a replacement for its waiters
      if (pool.waiters.length > 0) this.scale(pool);
      this.unblock();
    }
    if (pool.floor > pool.instances.size && !this.closing) {
      // a kept-warm instance went (it crashed, or was evicted): replace it, a moment later so that
      // a version that crashes at once does not spin
      setTimeout(() => this.replenish(pool), 1_000).unref();
    }
    this.forgetIfEmpty(pool);
  }

  private onExit(instance: Instance, exit: InstanceExit): void {
    // stopping: the platform stopped it; starting: the start (waitReady) reports it
    if (instance.state !== 'ready') return;
    const message = describeExit(exit, instance.running?.log() ?? '', instance.pool.settings.memoryMb);
    this.opts.logger?.warn('an instance died', {
      functionId: instance.pool.target.functionId,
      version: instance.pool.target.version,
      instanceId: instance.id,
      inflight: instance.inflight,
      error: message,
    });
    this.countCrash(instance.pool.target, message);
    instance.state = 'stopping';
    clearTimeout(instance.idleTimer);
    instance.channel?.close();
    this.removeFromPool(instance);
    void instance.running?.kill(); // frees its container or directory
  }

  private countCrash(target: InstanceTarget, message: string): void {
    const now = Date.now();
    let entry = this.crashes.get(target.deploymentId);
    if (!entry) {
      entry = { times: [], reportedAt: 0 };
      this.crashes.set(target.deploymentId, entry);
      // bounded: the oldest versions' histories go first
      if (this.crashes.size > 1000) this.crashes.delete(this.crashes.keys().next().value!);
    }
    entry.times = entry.times.filter((t) => now - t < CRASH_LOOP_WINDOW_MS);
    entry.times.push(now);
    if (entry.times.length >= CRASH_LOOP_COUNT && now - entry.reportedAt >= CRASH_LOOP_WINDOW_MS) {
      entry.reportedAt = now;
      this.opts.onCrashLoop?.({ target, crashes: entry.times.length, windowMs: CRASH_LOOP_WINDOW_MS, lastError: message });
    }
  }

  // ---------------------------------------------------------------- one invocation

  private async runOn<T>(instance: Instance, requestId: string, work: ExchangeWork<T>, started: number, cold: boolean): Promise<ExchangeOutcome<T>> {
    const { settings } = instance.pool;
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
      // Its handler may be stuck for good: replace the instance, never reuse it.
      void this.stop(instance, `invocation ${requestId} ran over its timeout of ${settings.timeoutMs} ms`);
    }, settings.timeoutMs);
    const base = { instanceId: instance.id, cold };
    const elapsed = () => Math.round(performance.now() - started);
    try {
      const value = await work(instance.channel!, abort.signal);
      return { ok: true, value, durationMs: elapsed(), ...base };
    } catch (err) {
      if (!(err instanceof ChannelError)) throw err;
      if (timedOut) {
        return {
          ok: false,
          kind: 'timeout',
          message: `timed out after ${settings.timeoutMs} ms`,
          logs: instance.running?.log() ?? '',
          durationMs: elapsed(),
          ...base,
        };
      }
      // The connection broke: the instance died (or was killed). Its exit says why.
      const running = instance.running!;
      const exit = await Promise.race([
        running.exited,
        new Promise<null>((r) => setTimeout(() => r(null), EXIT_GRACE_MS).unref()),
      ]);
      let message: string;
      if (instance.stoppedBy) {
        message = `the instance was stopped: ${instance.stoppedBy}`;
      } else if (exit) {
        message = describeExit(exit, running.log(), settings.memoryMb);
      } else {
        message = `the connection to the instance broke (${err.message})`;
        void this.stop(instance, message);
      }
      return { ok: false, kind: 'crashed', message, logs: running.log(), durationMs: elapsed(), ...base };
    } finally {
      clearTimeout(timer);
    }
  }
}
