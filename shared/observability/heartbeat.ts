// Runners say they are alive: each writes its row in `runners` every few seconds (the database's
// clock), and GET /api/status lists those seen in the last minute. A runner that stops cleanly
// removes its row; one that dies simply stops being seen.
import os from 'node:os';
import type { Db } from '../db/knex.ts';
import { dbTime, num } from '../db/dialect.ts';
import { toIso } from '../db/time.ts';
import type { Logger } from '../logger.ts';
import { platformVersion } from './version.ts';

export const HEARTBEAT_MS = 5_000;
/** GET /api/status lists runners seen within this long */
export const RUNNER_SEEN_WITHIN_MS = 60_000;

export interface RunnerInfo {
  id: string;
  driver: string;
  concurrency: number;
  /** builds running now, read at each beat */
  running: () => number;
}

export class RunnerHeartbeat {
  private timer?: NodeJS.Timeout;
  private beating: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    private readonly runner: RunnerInfo,
    private readonly everyMs = HEARTBEAT_MS,
  ) {}

  /** Records the first beat (the runner is listed at once), then one every `everyMs`. */
  async start(): Promise<void> {
    await this.beat(true);
    this.timer = setInterval(() => void this.beat(false), this.everyMs);
    this.timer.unref();
  }

  private beat(first: boolean): Promise<void> {
    this.beating ??= this.write(first)
      .catch((err) => this.logger.warn('could not record the runner heartbeat', { err }))
      .finally(() => (this.beating = null));
    return this.beating;
  }

  private async write(first: boolean): Promise<void> {
    const row = {
      id: this.runner.id,
      last_seen_at: dbTime(this.db),
      driver: this.runner.driver,
      version: platformVersion(),
      hostname: os.hostname().slice(0, 255),
      pid: process.pid,
      concurrency: this.runner.concurrency,
      running_builds: this.runner.running(),
    };
    const merge = ['last_seen_at', 'driver', 'version', 'hostname', 'pid', 'concurrency', 'running_builds'];
    // a runner restarted with the same RUNNER_ID starts afresh
    await this.db
      .knex('runners')
      .insert({ ...row, started_at: dbTime(this.db) })
      .onConflict('id')
      .merge(first ? [...merge, 'started_at'] : merge);
  }

  /** Stops beating and removes the row: a runner that stopped is not alive. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.beating;
    await this.db
      .knex('runners')
      .where({ id: this.runner.id })
      .delete()
      .catch((err) => this.logger.warn('could not remove the runner heartbeat', { err }));
  }
}

export interface RunnerView {
  id: string;
  startedAt: string | null;
  lastSeenAt: string | null;
  driver: string | null;
  version: string | null;
  hostname: string | null;
  pid: number | null;
  concurrency: number | null;
  runningBuilds: number;
}

/** Runners seen within `withinMs` (the database's clock), most recently seen first. */
export async function liveRunners(db: Db, withinMs = RUNNER_SEEN_WITHIN_MS): Promise<RunnerView[]> {
  const rows: Record<string, unknown>[] = await db
    .knex('runners')
    .where('last_seen_at', '>=', dbTime(db, -withinMs))
    .orderBy('last_seen_at', 'desc')
    .select();
  return rows.map((r) => ({
    id: String(r.id),
    startedAt: toIso(r.started_at),
    lastSeenAt: toIso(r.last_seen_at),
    driver: (r.driver as string | null) ?? null,
    version: (r.version as string | null) ?? null,
    hostname: (r.hostname as string | null) ?? null,
    pid: r.pid === null || r.pid === undefined ? null : num(r.pid),
    concurrency: r.concurrency === null || r.concurrency === undefined ? null : num(r.concurrency),
    runningBuilds: num(r.running_builds),
  }));
}
