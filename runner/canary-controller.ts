// The canary controller, hosted by every runner: every CANARY_TICK_MS it looks at the running
// canaries and, where a decision is due (an interval is over, or a candidate is conclusively bad),
// makes it under the canary's lock (shared/db/lock.ts: a PostgreSQL advisory lock, a leased row on
// SQLite), so one runner at a time works on a given function. The lock only saves work: the
// decision itself is a transaction conditional on the canary's step (decideCanary), which is what
// keeps two controllers from ever double-stepping. No state lives here, so a restarted or new
// runner resumes every canary from its row.
import { tryAcquireLock } from '../shared/db/lock.ts';
import { assessCanary, decideCanary, listRunningCanaries, waitRecorded } from '../shared/domain/canary.ts';
import type { CanaryRow } from '../shared/domain/canary-state.ts';
import type { Logger } from '../shared/logger.ts';
import type { Platform } from '../shared/platform.ts';

export class CanaryController {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private readonly logger: Logger;
  /** completed ticks (tests wait on it to know the controller has looked) */
  ticks = 0;

  constructor(
    private readonly p: Platform,
    private readonly holder: string,
    private readonly opts: { tickMs?: number } = {},
  ) {
    this.logger = p.logger.child({ component: 'canary-controller', holder });
  }

  start(): void {
    const tickMs = this.opts.tickMs ?? this.p.config.delivery.canaryTickMs;
    this.timer = setInterval(() => void this.tickOnce(), tickMs);
    void this.tickOnce();
  }

  /** One pass over the running canaries; a pass still under way is joined, never overlapped. */
  tickOnce(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.running ??= this.tick()
      .catch((err) => this.logger.error('canary controller tick failed', { err }))
      .finally(() => {
        this.running = undefined;
        this.ticks++;
      });
    return this.running;
  }

  private async tick(): Promise<void> {
    for (const c of await listRunningCanaries(this.p.db)) {
      if (this.stopped) return;
      // one canary's trouble (a failed query, a lock that would not come) never holds up the others
      await this.visit(c).catch((err) => this.logger.error('canary evaluation failed', { canaryId: c.id, functionId: c.function_id, err }));
    }
  }

  private async visit(c: CanaryRow): Promise<void> {
    const { verdict } = await assessCanary(this.p.db, c);
    if (verdict.kind === 'none' || (verdict.kind === 'wait' && waitRecorded(c))) return;
    const lock = await tryAcquireLock(this.p.db, `canary:${c.function_id}`, this.holder, { leaseMs: 15_000 });
    if (!lock) return; // another runner is deciding about this function right now
    try {
      const decision = await decideCanary(this.p.db, c.id, Number(c.step_index));
      if (decision !== 'none' && decision !== 'stale') {
        this.logger.info('canary decision', { canaryId: c.id, functionId: c.function_id, version: Number(c.version), decision });
      }
    } finally {
      await lock.release();
    }
  }

  /** Stops ticking and waits for a decision under way (its transaction commits or rolls back whole). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
