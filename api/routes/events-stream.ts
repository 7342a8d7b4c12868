// GET /api/functions/:id/events/stream — live tail of a function as server-sent events: its event
// log (builds, activations, rollbacks, canary steps…), build logs as the runner writes them, and
// invocations with what they printed (shared/domain/event-feed.ts reads them and defines the cursor).
//
//   id: <cursor>        resume with the Last-Event-ID header (or ?since=<cursor>; ?since=0 replays all)
//   event: <type>       a function_logs event name, "invocation" or "build_log"
//   data: <JSON>        EventView, InvocationView, or {deploymentId, version, attempt, lines}
//
// Bounded: EVENT_STREAMS_PER_USER open streams per user in this process (429 beyond), a comment
// every 15 s so proxies keep the connection, closed after EVENT_STREAM_MAX_SECONDS (the client
// resumes from its last id). The body is a pull stream: the next database read happens only when
// the socket has taken what was sent before, so a slow reader costs no memory.
import { z } from 'zod';
import { onFunctionChangedLocally } from '../../shared/domain/function-changes.ts';
import { EventFeed, parseCursor } from '../../shared/domain/event-feed.ts';
import { AppError, errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import { functionId, parseWith } from '../http/validation.ts';

export const KEEP_ALIVE_MS = 15_000;

export const eventsStreamQuery = z.object({
  since: z.string().max(2000).optional(),
});

const encoder = new TextEncoder();

/** One SSE message; `data` is one line of JSON (JSON.stringify escapes newlines). */
export function sseMessage(id: string, event: string, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

function cursorFrom(raw: string | undefined, where: string) {
  if (raw === undefined || raw.trim() === '') return null;
  if (raw.trim() === '0') return { events: 0, invocations: 0, builds: new Map<number, number>() };
  const c = parseCursor(raw);
  if (!c) throw errors.validation(`${where} is not a cursor of this stream (an id it sent, e.g. "12-7", or 0)`, { [where]: raw });
  return c;
}

export function register(app: App, p: Platform): void {
  const openByUser = new Map<string, number>();
  const { perUser, maxMs, pollMs } = p.config.eventStreams;

  app.get('/api/functions/:id/events/stream', async (c) => {
    const id = functionId(c);
    const query = parseWith(eventsStreamQuery, c.req.query());
    const header = c.req.header('last-event-id');
    const from = header !== undefined && header.trim() !== '' ? cursorFrom(header, 'Last-Event-ID') : cursorFrom(query.since, 'since');
    const userId = c.get('userId');
    const open = openByUser.get(userId) ?? 0;
    if (open >= perUser) {
      throw new AppError('capacity_exceeded', `at most ${perUser} event streams may be open at once per user; close one first`, { limit: perUser }, 5);
    }
    // the place is taken before the first await: concurrent requests must each see the others
    openByUser.set(userId, open + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const n = (openByUser.get(userId) ?? 1) - 1;
      if (n <= 0) openByUser.delete(userId);
      else openByUser.set(userId, n);
      unsubscribe();
      clearTimeout(wakeTimer);
      wake?.();
    };

    // a wait for new rows ends early when this process commits a change to the function
    let wake: (() => void) | null = null;
    let wakeTimer: NodeJS.Timeout | undefined;
    let changed = false;
    const unsubscribe = onFunctionChangedLocally((fid) => {
      if (fid !== id) return;
      changed = true;
      wake?.();
    });
    const sleep = (ms: number) =>
      new Promise<void>((resolve) => {
        wake = () => {
          wake = null;
          clearTimeout(wakeTimer);
          resolve();
        };
        wakeTimer = setTimeout(() => wake?.(), ms);
      });

    let feed: EventFeed;
    try {
      feed = await EventFeed.open(p.db, id, from);
    } catch (err) {
      release();
      throw err;
    }

    const endsAt = Date.now() + maxMs;
    let lastWrite = Date.now();
    let first = true;
    const body = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          if (first) {
            first = false;
            // the client's reconnection delay, and where the stream starts (a fresh reader can resume from it)
            controller.enqueue(encoder.encode(`retry: 1000\n: position ${feed.position()}\n\n`));
            return;
          }
          // called again only once the socket took the previous chunk: no reading ahead of a slow reader
          for (;;) {
            if (released) return controller.close();
            if (Date.now() >= endsAt) {
              controller.enqueue(encoder.encode(`: ${Math.round(maxMs / 1000)} s elapsed; reconnect with Last-Event-ID\n\n`));
              release();
              return controller.close();
            }
            let items;
            try {
              items = await feed.next();
            } catch (err) {
              p.logger.warn('event stream read failed; closing it', { functionId: id, err: (err as Error).message });
              controller.enqueue(encoder.encode(': read failed; reconnect with Last-Event-ID\n\n'));
              release();
              return controller.close();
            }
            if (items.length > 0) {
              lastWrite = Date.now();
              controller.enqueue(encoder.encode(items.map((x) => sseMessage(x.cursor, x.item.type, x.item.data)).join('')));
              return;
            }
            if (changed) {
              changed = false;
              // deleted meanwhile: say so once and end (reconnecting would answer 404)
              const exists = await p.db.knex('functions').where({ id }).first('id');
              if (!exists) {
                controller.enqueue(encoder.encode(sseMessage(feed.position(), 'function_deleted', { functionId: id })));
                release();
                return controller.close();
              }
            }
            if (Date.now() - lastWrite >= KEEP_ALIVE_MS) {
              lastWrite = Date.now();
              controller.enqueue(encoder.encode(': keep-alive\n\n'));
              return;
            }
            await sleep(Math.min(pollMs, endsAt - Date.now(), KEEP_ALIVE_MS - (Date.now() - lastWrite)));
          }
        },
        cancel() {
          // the client went away
          release();
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, {
      status: 200,
      headers: {
        'Content-Type': 'text/event-stream; charset=utf-8',
        'Cache-Control': 'no-cache, no-transform',
        Connection: 'keep-alive',
        // nginx and similar proxies: pass each message on at once
        'X-Accel-Buffering': 'no',
      },
    });
  });
}
