// Group commit: the writes many requests ask for in one turn of the event loop, done together in
// one transaction. A database pays per transaction (its commit, its round trips, its lock) far more
// than per statement, so under load a batch of deploys costs little more than one. The batch is
// formed after the turn's I/O callbacks have run (setImmediate): whatever arrived together waits
// for nothing else, and a lone request waits for no timer.

export type Outcome<R> = { ok: true; value: R } | { ok: false; err: unknown };

export interface TurnBatchOptions<J, R> {
  /** jobs in one batch at most */
  max: number;
  /** batches in progress at once at most (a batch holds a database connection) */
  concurrency: number;
  /**
   * When every batch in progress has been for `afterMs` (waiting for a lock, say), up to
   * `concurrency` batches at once instead: the jobs behind a stalled batch are not held up by it.
   */
  stalled?: { afterMs: number; concurrency: number };
  /** jobs waiting at most; submit() answers null beyond it (the caller does the job alone) */
  maxQueued?: number;
  /** Runs a batch: one outcome per job, in order. A throw fails every job of the batch with it. */
  run(jobs: J[]): Promise<Outcome<R>[]> | Outcome<R>[];
}

interface Waiting<J, R> {
  job: J;
  resolve(value: R): void;
  reject(err: unknown): void;
}

export class TurnBatcher<J, R> {
  private readonly queue: Waiting<J, R>[] = [];
  /** the batches in progress, with when each started (performance.now()) */
  private readonly started = new Set<{ at: number }>();
  private scheduled = false;
  private stallTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: TurnBatchOptions<J, R>) {}

  /** The job's outcome once its batch has run; null, at once, when the queue is full. */
  submit(job: J): Promise<R> | null {
    if (this.opts.maxQueued !== undefined && this.queue.length >= this.opts.maxQueued) return null;
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // after the requests of this turn have submitted theirs
    setImmediate(() => {
      this.scheduled = false;
      this.startBatches();
    });
  }

  private startBatches(): void {
    while (this.queue.length > 0) {
      if (this.started.size >= this.limit()) {
        this.watchForStall();
        return;
      }
      // the oldest waiting jobs
      void this.runBatch(this.queue.splice(0, this.opts.max));
    }
  }

  /** How many batches may be in progress now. */
  private limit(): number {
    const { concurrency, stalled } = this.opts;
    if (!stalled || this.started.size === 0) return concurrency;
    const youngest = Math.max(...[...this.started].map((b) => b.at));
    return performance.now() - youngest >= stalled.afterMs ? Math.max(concurrency, stalled.concurrency) : concurrency;
  }

  /** Jobs wait behind batches in progress: look again when the youngest of them would count as stalled. */
  private watchForStall(): void {
    const { stalled } = this.opts;
    if (!stalled || this.stallTimer || this.started.size >= stalled.concurrency) return;
    const youngest = Math.max(...[...this.started].map((b) => b.at));
    this.stallTimer = setTimeout(() => {
      this.stallTimer = null;
      this.startBatches();
    }, Math.max(1, youngest + stalled.afterMs - performance.now()));
    this.stallTimer.unref();
  }

  private async runBatch(batch: Waiting<J, R>[]): Promise<void> {
    const inProgress = { at: performance.now() };
    this.started.add(inProgress);
    let outcomes: Outcome<R>[] | null = null;
    let failure: unknown;
    try {
      outcomes = await this.opts.run(batch.map((w) => w.job));
      if (outcomes.length !== batch.length) throw new Error(`a batch of ${batch.length} jobs answered ${outcomes.length} outcomes`);
    } catch (err) {
      outcomes = null;
      failure = err;
    } finally {
      this.started.delete(inProgress);
      // the rest in the next turn, once I/O has had its turn
      if (this.queue.length > 0) this.schedule();
    }
    batch.forEach((w, i) => {
      const o = outcomes?.[i];
      if (!o) w.reject(failure);
      else if (o.ok) w.resolve(o.value);
      else w.reject(o.err);
    });
  }
}
