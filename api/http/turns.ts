// Requests start in short turns of the event loop, so that new connections get in under load.
//
// Node 20's libuv accepts one connection per event-loop iteration (libuv PR #3696, "don't accept()
// connections in a loop"), and an iteration runs every request whose bytes arrived in it: with the
// synchronous SQLite driver each runs to its end there. At 64 busy keep-alive clients of /deploy
// an iteration was ~30 ms of requests, so a burst of new connections got in one per 30 ms: 26 of
// 64 waited up to 400 ms to be accepted while the other 38 were answered in 40 (docs/benchmarks.md).
//
// So an iteration starts requests for TURN_BUDGET_MS at most; past it, a request waits in a FIFO
// queue and starts in a later iteration, after that iteration has accepted its next connection.
// Below saturation nothing waits: a request starts as it arrives.
//
// Each waiting request starts from its own setImmediate callback (Node runs the promise jobs of
// one before the next), so the time a turn has spent counts everything the started requests did
// synchronously. At most MAX_ARMED callbacks are armed at once: a long queue does not cost a
// callback per waiting request in every iteration.

import { DEFAULT_MAX_WAITING_REQUESTS } from '../../shared/config.ts';

/** how long one event-loop iteration may spend starting requests before the rest wait for the next */
export const TURN_BUDGET_MS = 1;
const MAX_ARMED = 16;

export class RequestTurns {
  /** when the current turn began: the first request started since the last check phase */
  private turnStartedAt: number | null = null;
  private readonly waiting: (() => void)[] = [];
  private armed = 0;

  constructor(
    private readonly budgetMs = TURN_BUDGET_MS,
    /** requests waiting for a turn before new ones are refused (503) */
    readonly maxWaiting = DEFAULT_MAX_WAITING_REQUESTS,
  ) {
    // each turn starts at least one waiting request only when the budget is above 0
    if (!(budgetMs > 0)) throw new Error(`a turn's budget must be above 0 ms, not ${budgetMs}`);
  }

  /** requests waiting for a turn now */
  get queued(): number {
    return this.waiting.length;
  }

  /**
   * Runs `start` now when this turn has time left and nothing waits, else in a later turn, in
   * arrival order. false: too many wait, `start` will not run (the caller answers 503).
   */
  admit(start: () => void): boolean {
    if (this.waiting.length === 0 && this.timeLeft()) {
      start();
      return true;
    }
    if (this.waiting.length >= this.maxWaiting) return false;
    this.waiting.push(start);
    this.arm();
    return true;
  }

  private timeLeft(): boolean {
    const now = performance.now();
    if (this.turnStartedAt === null) {
      this.turnStartedAt = now;
      // runs in this iteration's check phase, after the poll phase that started requests: the
      // callbacks armed after it begin a new turn
      setImmediate(this.endTurn);
    }
    return now - this.turnStartedAt < this.budgetMs;
  }

  private readonly endTurn = (): void => {
    this.turnStartedAt = null;
  };

  private arm(): void {
    while (this.armed < Math.min(this.waiting.length, MAX_ARMED)) {
      this.armed++;
      setImmediate(this.startNext);
    }
  }

  private readonly startNext = (): void => {
    this.armed--;
    const start = this.waiting.length > 0 && this.timeLeft() ? this.waiting.shift()! : null;
    // a callback armed now runs in the next iteration (Node runs the ones armed during a check
    // phase in the next one), after its poll phase
    this.arm();
    start?.();
  };
}

const turnsOfApps = new WeakMap<object, RequestTurns>();

/** The turns `app`'s server starts its requests in: one per app, shared by serveApi and its metrics. */
export function turnsOf(app: object): RequestTurns {
  let turns = turnsOfApps.get(app);
  if (!turns) turnsOfApps.set(app, (turns = new RequestTurns()));
  return turns;
}

/** Gives `app` turns that let `maxWaiting` requests wait (createApi: API_MAX_WAITING_REQUESTS). */
export function boundTurns(app: object, maxWaiting: number): RequestTurns {
  const turns = new RequestTurns(TURN_BUDGET_MS, maxWaiting);
  turnsOfApps.set(app, turns);
  return turns;
}
