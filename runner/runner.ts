// The runner daemon's loop: claim queued builds into free worker slots, run them, repeat. Woken at
// once by PostgreSQL NOTIFY when a build is queued, by a timer when the earliest retry is due, and
// by a poll timer as the fallback (the only path on SQLite). All state lives in the database: a
// runner can be killed at any moment and its builds are taken over when their leases run out.
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import {
  BUILD_QUEUED_CHANNEL,
  claimBuilds,
  failExhaustedBuilds,
  nextQueueChangeInMs,
  onBuildQueuedLocally,
  retryExpiredClaims,
} from '../shared/domain/build-queue.ts';
import { PgListener } from '../shared/db/listener.ts';
import type { Logger } from '../shared/logger.ts';
import type { Platform } from '../shared/platform.ts';
import type { RuntimeDriver } from '../shared/runtime/types.ts';
import { runBuild } from './build-job.ts';
import { RunnerHeartbeat } from '../shared/observability/heartbeat.ts';
import { outsideRequest } from '../shared/observability/request-context.ts';

export function defaultRunnerId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export class Runner {
  readonly id: string;
  private readonly logger: Logger;
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly shutdown = new AbortController();
  private pollTimer?: NodeJS.Timeout;
  /** set for the earliest retry (or lease expiry) due before the next poll */
  private dueTimer?: NodeJS.Timeout;
  private listener?: PgListener;
  private unsubscribeLocal?: () => void;
  private ticking = false;
  private again = false;
  private stopped = false;
  private heartbeat?: RunnerHeartbeat;
  private untrackRunning?: () => void;

  constructor(
    private readonly p: Platform,
    private readonly driver: RuntimeDriver,
    opts: { id?: string } = {},
  ) {
    this.id = opts.id ?? p.config.runner.id ?? defaultRunnerId();
    this.logger = p.logger.child({ runnerId: this.id });
  }

  async start(): Promise<void> {
    const cfg = this.p.config.runner;
    const listening =
      this.p.config.database.client === 'pg' && cfg.notify ? await this.listen(this.p.config.database.url) : false;
    this.logger.info('runner started', {
      driver: this.driver.name,
      concurrency: cfg.concurrency,
      pollMs: cfg.pollMs,
      leaseMs: cfg.leaseMs,
      wakeUp: listening ? 'notify+poll' : cfg.notify ? 'in-process+poll' : 'poll',
    });
    // RUNNER_NOTIFY=off means polling only: no NOTIFY and no in-process wake-up either.
    if (cfg.notify) this.unsubscribeLocal = onBuildQueuedLocally(() => this.wake());
    this.pollTimer = setInterval(() => this.wake(), cfg.pollMs);
    // GET /api/status lists the runners alive; GET /metrics counts running builds
    this.untrackRunning = this.p.metrics.trackRunningBuilds(() => this.inflight.size);
    this.heartbeat = new RunnerHeartbeat(this.p.db, this.logger, {
      id: this.id,
      driver: this.driver.name,
      concurrency: cfg.concurrency,
      running: () => this.inflight.size,
    });
    await this.heartbeat.start();
    this.wake();
  }

  /** Claim work now (called on NOTIFY, on the poll timer, and when a slot frees up). */
  wake(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    // woken in-process by a request that queued a build: the claim loop is not part of that request
    void outsideRequest(() => this.tick())
      .catch((err) => this.logger.error('claiming builds failed', { err }))
      .finally(() => {
        this.ticking = false;
        if (this.again) {
          this.again = false;
          this.wake();
        }
      });
  }

  private async tick(): Promise<void> {
    const cfg = this.p.config.runner;
    const free = cfg.concurrency - this.inflight.size;
    if (free <= 0) return;
    await failExhaustedBuilds(this.p.db, cfg.maxAttempts);
    await retryExpiredClaims(this.p.db, cfg);
    const claimed = await claimBuilds(this.p.db, {
      runnerId: this.id,
      limit: free,
      leaseMs: cfg.leaseMs,
      maxAttempts: cfg.maxAttempts,
    });
    if (claimed.length < free) await this.wakeWhenDue();
    for (const build of claimed) {
      const job = runBuild(
        { p: this.p, driver: this.driver, runnerId: this.id, logger: this.logger, shutdown: this.shutdown.signal },
        build,
      ).finally(() => {
        this.inflight.delete(build.id);
        this.wake();
      });
      this.inflight.set(build.id, job);
    }
  }

  /**
   * A build waiting out its backoff is claimable at its next_attempt_at: wake then rather than at
   * the next poll (RUNNER_POLL_MS may be long), measured on the database's clock.
   */
  private async wakeWhenDue(): Promise<void> {
    const inMs = await nextQueueChangeInMs(this.p.db);
    clearTimeout(this.dueTimer);
    if (inMs === null || inMs >= this.p.config.runner.pollMs || this.stopped) return;
    // a few ms late rather than early: early finds the row not claimable yet
    this.dueTimer = setTimeout(() => this.wake(), inMs + 5);
    this.dueTimer.unref();
  }

  private async listen(url: string): Promise<boolean> {
    this.listener = new PgListener({
      url,
      channels: [BUILD_QUEUED_CHANNEL],
      onNotification: () => this.wake(),
      // builds queued while it was down were not announced: look now
      onReset: () => this.wake(),
      logger: this.logger,
    });
    return this.listener.start();
  }

  /**
   * Stops claiming, gives in-flight builds `graceMs` to finish, then aborts them; aborted builds
   * hand their claim back so another runner picks them up at once.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearTimeout(this.dueTimer);
    this.unsubscribeLocal?.();
    await this.listener?.stop();
    const all = Promise.allSettled([...this.inflight.values()]);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), graceMs)));
    if ((await Promise.race([all, deadline])) === 'timeout') {
      this.logger.info('aborting in-flight builds', { count: this.inflight.size });
      this.shutdown.abort(new Error('runner shutting down'));
      await all;
    }
    clearTimeout(timer);
    this.untrackRunning?.();
    await this.heartbeat?.stop();
    this.logger.info('runner stopped');
  }

  get busy(): number {
    return this.inflight.size;
  }
}
