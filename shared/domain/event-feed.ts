// What GET /api/functions/:id/events/stream sends, read from the database: the function's event log
// (function_logs: builds, activations, rollbacks, canary steps…), its invocations with what they
// printed (function_invocations), and the build log of each build under way (the runner writes
// build_logs at every lease renewal and at the end of the build).
//
// The cursor. Two tables with their own ids, plus build logs that are no rows at all, so one number
// cannot say where a reader is. The cursor is the position in every source at once:
//
//   "<e>-<i>"                    the last function_logs id and the last function_invocations id sent
//   "<e>-<i>-<s>:<n>,<s>:<n>"    and, per build under way, <n> lines of its log sent, the build named
//                                by the id <s> of its build_started event (one per attempt)
//
// Every item advances exactly one component, so the cursors of one stream are totally ordered
// (componentwise), and resuming from one sends exactly what came after it: no repeat, no loss.
//
// Ids in commit order: SQLite has one writer, so a row with a lower id is never committed after a
// higher one has been read. PostgreSQL hands out ids before commit, so a transaction can commit id
// 10 after id 11 was read. There the feed reads only up to a watermark: the largest id the table
// held SETTLE_MS earlier; a row is lost only if its transaction stayed open that long after a later
// row committed (the event writes are short transactions).
import type { Db } from '../db/knex.ts';
import { num } from '../db/dialect.ts';
import { toIso } from '../db/time.ts';
import type { EventView } from './events.ts';
import type { InvocationView } from './invocation-log.ts';

export const PG_SETTLE_MS = 300;
/** rows read per source per poll: a reader far behind catches up in batches (each waits for the socket) */
const BATCH = 100;

/** The events that end a build attempt: its log is final once they are written. */
const BUILD_ENDS = new Set(['build_succeeded', 'build_failed', 'build_retried', 'build_waiting']);
const CUT_MARKER = /^\[… \d+ bytes \(\d+ lines\) of build output cut …\]$/;

export interface FeedCursor {
  events: number;
  invocations: number;
  /** build_started event id → lines of that attempt's log sent */
  builds: Map<number, number>;
}

export function formatCursor(c: FeedCursor): string {
  const builds = [...c.builds].filter(([, n]) => n > 0).map(([s, n]) => `${s}:${n}`);
  return `${c.events}-${c.invocations}${builds.length ? `-${builds.join(',')}` : ''}`;
}

/** null when `text` is not a cursor. */
export function parseCursor(text: string): FeedCursor | null {
  const m = /^(\d{1,15})-(\d{1,15})(?:-(\d{1,15}:\d{1,9}(?:,\d{1,15}:\d{1,9}){0,63}))?$/.exec(text.trim());
  if (!m) return null;
  const builds = new Map<number, number>();
  for (const pair of m[3]?.split(',') ?? []) {
    const [s, n] = pair.split(':').map(Number);
    builds.set(s!, n!);
  }
  return { events: Number(m[1]), invocations: Number(m[2]), builds };
}

export type FeedItem =
  | { type: string; kind: 'event'; data: EventView }
  | { type: 'invocation'; kind: 'invocation'; data: InvocationView }
  | { type: 'build_log'; kind: 'build_log'; data: { deploymentId: string; version: number; attempt: number; lines: string[] } };

export interface CursoredItem {
  item: FeedItem;
  /** the cursor just after this item: the SSE id */
  cursor: string;
}

interface TrackedBuild {
  deploymentId: string;
  version: number;
  attempt: number;
  /** the lines of the log text last seen (to diff the next one against) */
  seen: string[] | null;
  /** lines of the current text sent, from the resumed cursor when nothing was seen yet */
  sent: number;
}

const toEventView = (r: Record<string, unknown>): EventView => ({
  id: num(r.id),
  deploymentId: (r.deployment_id as string | null) ?? null,
  version: r.version === null || r.version === undefined ? null : num(r.version),
  event: r.event as string,
  message: r.message as string,
  createdAt: toIso(r.created_at),
});

const toInvocationView = (r: Record<string, unknown>): InvocationView => ({
  id: num(r.id),
  requestId: r.request_id as string,
  version: num(r.version),
  deploymentId: r.deployment_id as string,
  outcome: r.outcome as string,
  durationMs: num(r.duration_ms),
  method: (r.method as string | null) ?? null,
  path: (r.path as string | null) ?? null,
  status: r.status === null || r.status === undefined ? null : num(r.status),
  logs: (r.logs as string | null) ?? null,
  error: (r.error as string | null) ?? null,
  createdAt: toIso(r.created_at),
});

/** The attempt a build_started message names ("… (attempt 2)"). */
const attemptOf = (message: string) => Number(/\(attempt (\d+)\)/.exec(message)?.[1] ?? 0);

export class EventFeed {
  private cursor: FeedCursor = { events: 0, invocations: 0, builds: new Map() };
  private readonly tracked = new Map<number, TrackedBuild>();
  /** PostgreSQL: (when, max event id, max invocation id) samples, for the watermark */
  private samples: { at: number; events: number; invocations: number }[] = [];

  private constructor(
    private readonly db: Db,
    private readonly functionId: string,
  ) {}

  /**
   * A feed from `from` (a cursor), or from now when null: then only builds under way send their
   * log so far, and everything written afterwards follows.
   */
  static async open(db: Db, functionId: string, from: FeedCursor | null): Promise<EventFeed> {
    const feed = new EventFeed(db, functionId);
    if (from) feed.cursor = { events: from.events, invocations: from.invocations, builds: new Map(from.builds) };
    else {
      const [e, i] = await Promise.all([
        db.knex('function_logs').where({ function_id: functionId }).max({ m: 'id' }).first(),
        db.knex('function_invocations').where({ function_id: functionId }).max({ m: 'id' }).first(),
      ]);
      feed.cursor.events = num(e?.m ?? 0);
      feed.cursor.invocations = num(i?.m ?? 0);
    }
    await feed.trackOpenBuilds();
    return feed;
  }

  position(): string {
    return formatCursor(this.cursor);
  }

  /** Builds started at or before the cursor and not over by then: their logs are followed. */
  private async trackOpenBuilds(): Promise<void> {
    const rows = await this.db
      .knex('function_logs')
      .where({ function_id: this.functionId })
      .andWhere('id', '<=', this.cursor.events)
      .whereIn('event', ['build_started', ...BUILD_ENDS])
      .orderBy('id', 'desc')
      .limit(200)
      .select('id', 'deployment_id', 'version', 'event', 'message');
    const ended = new Set<string>();
    for (const r of rows) {
      const dep = r.deployment_id as string | null;
      if (!dep) continue;
      if (BUILD_ENDS.has(r.event)) ended.add(dep);
      else if (!ended.has(dep)) {
        ended.add(dep); // older attempts of it are over
        this.track(num(r.id), dep, num(r.version), attemptOf(r.message), this.cursor.builds.get(num(r.id)) ?? 0);
      }
    }
    // a cursor naming builds this feed does not follow (over before the cursor): forget them
    for (const s of [...this.cursor.builds.keys()]) if (!this.tracked.has(s)) this.cursor.builds.delete(s);
  }

  private track(startedId: number, deploymentId: string, version: number, attempt: number, sent: number): void {
    this.tracked.set(startedId, { deploymentId, version, attempt, seen: null, sent });
    this.cursor.builds.set(startedId, sent);
  }

  /** The largest ids safe to read (see the opening comment). */
  private async watermark(): Promise<{ events: number; invocations: number }> {
    if (this.db.dialect !== 'pg') return { events: Number.MAX_SAFE_INTEGER, invocations: Number.MAX_SAFE_INTEGER };
    const now = Date.now();
    const [e, i] = await Promise.all([
      this.db.knex('function_logs').max({ m: 'id' }).first(),
      this.db.knex('function_invocations').max({ m: 'id' }).first(),
    ]);
    this.samples.push({ at: now, events: num(e?.m ?? 0), invocations: num(i?.m ?? 0) });
    // the newest sample at least SETTLE_MS old; older ones are no longer needed
    let settled: { at: number; events: number; invocations: number } | null = null;
    while (this.samples.length > 0 && now - this.samples[0]!.at >= PG_SETTLE_MS) settled = this.samples.shift()!;
    if (settled) this.samples.unshift(settled);
    return settled ?? { events: this.cursor.events, invocations: this.cursor.invocations };
  }

  /** Everything new since the last call (or the cursor), in order, each with the cursor after it. */
  async next(): Promise<CursoredItem[]> {
    const mark = await this.watermark();
    const [eventRows, invocationRows] = await Promise.all([
      mark.events > this.cursor.events
        ? this.db
            .knex('function_logs')
            .where({ function_id: this.functionId })
            .andWhere('id', '>', this.cursor.events)
            .andWhere('id', '<=', mark.events)
            .orderBy('id', 'asc')
            .limit(BATCH)
        : Promise.resolve([]),
      mark.invocations > this.cursor.invocations
        ? this.db
            .knex('function_invocations')
            .where({ function_id: this.functionId })
            .andWhere('id', '>', this.cursor.invocations)
            .andWhere('id', '<=', mark.invocations)
            .orderBy('id', 'asc')
            .limit(BATCH)
        : Promise.resolve([]),
    ]);
    const events = (eventRows as Record<string, unknown>[]).map(toEventView);
    // builds that start in this batch are followed from their first line
    for (const e of events) {
      if (e.event === 'build_started' && e.deploymentId && e.version !== null) {
        this.tracked.set(e.id, { deploymentId: e.deploymentId, version: e.version, attempt: attemptOf(e.message), seen: null, sent: 0 });
      }
    }
    // read after the events: a build's final log is written with the event that ends it
    const logs = await this.readBuildLogs();

    const out: CursoredItem[] = [];
    const emitLog = (startedId: number) => {
      const t = this.tracked.get(startedId);
      const text = logs.get(t?.deploymentId ?? '');
      if (!t || text === undefined) return;
      const lines = newLines(t, text);
      if (lines.length === 0) return;
      this.cursor.builds.set(startedId, t.sent);
      out.push({
        item: { type: 'build_log', kind: 'build_log', data: { deploymentId: t.deploymentId, version: t.version, attempt: t.attempt, lines } },
        cursor: formatCursor(this.cursor),
      });
    };

    // one order for both tables: by time, an event before an invocation of the same instant
    const merged = [
      ...events.map((e) => ({ at: e.createdAt ?? '', order: 0, e })),
      ...(invocationRows as Record<string, unknown>[]).map((r) => ({ at: toIso(r.created_at) ?? '', order: 1, inv: toInvocationView(r) })),
    ].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.order - b.order));
    for (const m of merged) {
      if ('e' in m && m.e) {
        const e = m.e;
        if (e.event === 'build_started') this.cursor.builds.set(e.id, 0);
        if (BUILD_ENDS.has(e.event)) {
          // the rest of the log goes before the event that ends the build
          for (const [s, t] of this.tracked) {
            if (t.deploymentId !== e.deploymentId || s > e.id) continue;
            emitLog(s);
            this.untrack(s);
          }
        }
        this.cursor.events = e.id;
        out.push({ item: { type: e.event, kind: 'event', data: e }, cursor: formatCursor(this.cursor) });
      } else if ('inv' in m && m.inv) {
        this.cursor.invocations = m.inv.id;
        out.push({ item: { type: 'invocation', kind: 'invocation', data: m.inv }, cursor: formatCursor(this.cursor) });
      }
    }
    // builds still under way: what their log gained since
    for (const [s, t] of this.tracked) if (s <= this.cursor.events && t) emitLog(s);
    return out;
  }

  private untrack(startedId: number): void {
    this.tracked.delete(startedId);
    this.cursor.builds.delete(startedId);
  }

  private async readBuildLogs(): Promise<Map<string, string>> {
    const ids = [...new Set([...this.tracked.values()].map((t) => t.deploymentId))];
    if (ids.length === 0) return new Map();
    const rows = await this.db.knex('function_deployments').whereIn('id', ids).select('id', 'build_logs');
    return new Map(rows.map((r) => [r.id as string, (r.build_logs as string | null) ?? '']));
  }
}

/**
 * The lines of `text` not sent yet. The row can still hold the previous attempt's log (until the
 * new attempt's first write), recognised by its first line; and a long log is cut in its middle
 * (build-log.ts), so what was seen may have lost lines before the new ones.
 */
function newLines(t: TrackedBuild, text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (t.attempt > 0 && !lines[0]!.includes(`(attempt ${t.attempt})`)) return [];
  let fresh: string[];
  if (t.seen === null) fresh = lines.slice(t.sent);
  else if (lines.length >= t.seen.length && t.seen.every((l, i) => lines[i] === l)) fresh = lines.slice(t.seen.length);
  else {
    // cut since: find the last line sent in what is left after the cut
    const marker = lines.findIndex((l) => CUT_MARKER.test(l));
    const last = t.seen[t.seen.length - 1];
    let at = -1;
    for (let j = lines.length - 1; j > marker; j--) {
      if (lines[j] === last) {
        at = j;
        break;
      }
    }
    fresh = at >= 0 ? lines.slice(at + 1) : lines.slice(Math.max(0, marker));
  }
  t.seen = lines;
  t.sent = lines.length;
  return fresh;
}
