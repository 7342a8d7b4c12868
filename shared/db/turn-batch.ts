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
  private running = 0;
  private scheduled = false;

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
    while (this.running < this.opts.concurrency) {
      // the oldest waiting jobs
      const batch = this.queue.splice(0, this.opts.max);
      if (batch.length === 0) return;
      this.running++;
      void this.runBatch(batch);
    }
  }

  private async runBatch(batch: Waiting<J, R>[]): Promise<void> {
    let outcomes: Outcome<R>[] | null = null;
    let failure: unknown;
    try {
      outcomes = await this.opts.run(batch.map((w) => w.job));
      if (outcomes.length !== batch.length) throw new Error(`a batch of ${batch.length} jobs answered ${outcomes.length} outcomes`);
    } catch (err) {
      outcomes = null;
      failure = err;
    } finally {
      this.running--;
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
