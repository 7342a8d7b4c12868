// What each invocation printed and how it ended (function_invocations), written off the request
// path: records wait in a bounded buffer and are inserted in batches a few times a second, so a
// burst of invocations never waits on database writes. Visible in GET …/invocations within ~1 s.
import type { Db } from '../db/knex.ts';
import { num } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';
import type { Logger } from '../logger.ts';
import { outsideRequest } from '../observability/request-context.ts';

/** Logs kept per invocation; the rest of a chatty function's output is dropped from the front. */
export const STORED_LOG_BYTES = 16 * 1024;
const ERROR_CHARS = 4_000;
const PATH_CHARS = 1_024;

export interface InvocationRecord {
  functionId: string;
  deploymentId: string;
  version: number;
  requestId: string;
  /** ok | error | timeout | crashed */
  outcome: string;
  durationMs: number;
  logs: string;
  error: string | null;
  /** endpoint invocations: the request's method and path (without its query) */
  method?: string;
  path?: string;
  /** the HTTP status the caller got */
  status?: number;
}

function tail(text: string, max: number): string {
  const buf = Buffer.from(text);
  return buf.length <= max ? text : `[… ${buf.length - max} bytes dropped …]\n` + buf.subarray(buf.length - max).toString();
}

export interface RecorderOptions {
  flushMs?: number;
  /** rows per INSERT */
  batchRows?: number;
  /** records waiting at most; past it the oldest are dropped (and counted in a warning) */
  maxPending?: number;
}

export class InvocationRecorder {
  private pending: Record<string, unknown>[] = [];
  private dropped = 0;
  private timer?: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private readonly flushMs: number;
  private readonly batchRows: number;
  private readonly maxPending: number;

  constructor(
    private readonly db: Db,
    private readonly logger: Logger,
    opts: RecorderOptions = {},
  ) {
    this.flushMs = opts.flushMs ?? 200;
    this.batchRows = opts.batchRows ?? 200;
    this.maxPending = opts.maxPending ?? 10_000;
  }

  record(r: InvocationRecord): void {
    this.pending.push({
      function_id: r.functionId,
      deployment_id: r.deploymentId,
      version: r.version,
      request_id: r.requestId,
      outcome: r.outcome,
      duration_ms: Math.round(r.durationMs),
      logs: tail(r.logs, STORED_LOG_BYTES),
      error: r.error === null ? null : r.error.slice(0, ERROR_CHARS),
      method: r.method ?? null,
      path: r.path === undefined ? null : r.path.slice(0, PATH_CHARS),
      status: r.status ?? null,
      created_at: nowIso(),
    });
    if (this.pending.length > this.maxPending) {
      const excess = this.pending.length - this.maxPending;
      this.pending.splice(0, excess);
      this.dropped += excess;
    }
    this.timer ??= outsideRequest(() =>
      setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.flushMs),
    );
  }

  /** Writes everything recorded so far (one flush at a time). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.pending.length === 0) return;
    this.flushing = this.write().finally(() => (this.flushing = null));
    await this.flushing;
  }

  private async write(): Promise<void> {
    if (this.dropped > 0) {
      this.logger.warn('invocation records dropped: the database did not keep up', { dropped: this.dropped });
      this.dropped = 0;
    }
    const rows = this.pending;
    this.pending = [];
    for (let i = 0; i < rows.length; i += this.batchRows) {
      const batch = rows.slice(i, i + this.batchRows);
      try {
        await this.db.knex('function_invocations').insert(batch);
      } catch {
        // One bad row (its function deleted meanwhile: a foreign key) must not cost the batch.
        let lost = 0;
        for (const row of batch) {
          await this.db.knex('function_invocations').insert(row).catch(() => lost++);
        }
        if (lost > 0) this.logger.warn('invocation records could not be written', { lost });
      }
    }
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}

export interface InvocationView {
  id: number;
  requestId: string;
  version: number;
  deploymentId: string;
  outcome: string;
  durationMs: number;
  /** endpoint invocations: the request's method and path; null for POST …/invoke */
  method: string | null;
  path: string | null;
  status: number | null;
  logs: string | null;
  error: string | null;
  createdAt: string | null;
}

export async function listInvocations(
  db: Db,
  functionId: string,
  opts: { limit: number; version?: number },
): Promise<InvocationView[]> {
  const q = db.knex('function_invocations').where({ function_id: functionId });
  if (opts.version !== undefined) q.andWhere({ version: opts.version });
  const rows = await q.orderBy('id', 'desc').limit(opts.limit);
  return rows.map((r) => ({
    id: num(r.id),
    requestId: r.request_id,
    version: num(r.version),
    deploymentId: r.deployment_id,
    outcome: r.outcome,
    durationMs: num(r.duration_ms),
    method: r.method ?? null,
    path: r.path ?? null,
    status: r.status === null || r.status === undefined ? null : num(r.status),
    logs: r.logs ?? null,
    error: r.error ?? null,
    createdAt: toIso(r.created_at),
  }));
}
