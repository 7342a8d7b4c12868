// Following GET /api/functions/:id/events/stream as EventSource would, without a browser: parse
// the server-sent events, remember the last id, and on a dropped connection (or the server's
// periodic close) reconnect with Last-Event-ID, so nothing is repeated or lost. Used by
// `logs --follow` and `deploy`.
import type { ApiClient, EventEntry, Invocation } from './api-client.ts';
import type { Answer } from './http-exchange.ts';
import { ApiError, CliError } from './errors.ts';

export type StreamMessage =
  | { id: string; event: 'invocation'; data: Invocation }
  | { id: string; event: 'build_log'; data: { deploymentId: string; version: number; attempt: number; lines: string[] } }
  | { id: string; event: string; data: EventEntry };

/** The server has no event stream (an older version): the caller falls back to polling. */
export class StreamUnsupported extends Error {}

const RECONNECT_MS = 1000;

export function isStreamUnsupported(err: unknown): boolean {
  return err instanceof ApiError && ((err.status === 404 && err.code !== 'function_not_found') || err.status === 501 || err.status === 405);
}

/** Splits a text/event-stream body into messages (comments and the `retry:` field are kept apart). */
export async function* parseEventStream(
  body: AsyncIterable<Uint8Array>,
  onComment?: (text: string) => void,
): AsyncGenerator<{ id: string | null; event: string; data: string }> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
    let at: number;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let id: string | null = null;
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          onComment?.(line.slice(1).trim());
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'id') id = value;
        else if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) yield { id, event, data: data.join('\n') };
    }
  }
}

export interface FollowOptions {
  /** resume after this cursor (an id the stream sent); absent: from now */
  since?: string;
  signal?: AbortSignal;
  /** told once the stream answered (each time it reconnects): the position it starts at */
  onOpen?: (position: string | null) => void;
  /** a connection dropped; the next try comes after `RECONNECT_MS` */
  onDrop?: (err: unknown) => void;
}

/**
 * The function's events from `since` (or now) on, for as long as the caller iterates. Reconnects
 * on its own; an answer of the API (401, 404…) ends it with that error, and a server without the
 * stream with StreamUnsupported.
 */
export async function* followEvents(api: ApiClient, functionId: string, opts: FollowOptions = {}): AsyncGenerator<StreamMessage> {
  let last = opts.since;
  const path = `/api/functions/${functionId}/events/stream`;
  for (;;) {
    if (opts.signal?.aborted) return;
    let res: Answer;
    try {
      res = await api.openEventStream(last === undefined ? path : `${path}?since=${encodeURIComponent(last)}`, { lastEventId: last, signal: opts.signal });
    } catch (err) {
      if (opts.signal?.aborted) return;
      if (isStreamUnsupported(err)) throw new StreamUnsupported((err as Error).message);
      if (err instanceof ApiError && err.status === 429) {
        // our previous connection is not yet seen closed, or other streams are open: wait a little
        opts.onDrop?.(err);
        await pause(RECONNECT_MS, opts.signal);
        continue;
      }
      if (err instanceof ApiError) throw err;
      if (!(err instanceof CliError)) throw err;
      opts.onDrop?.(err);
      await pause(RECONNECT_MS, opts.signal);
      continue;
    }
    try {
      for await (const m of parseEventStream(res.body, (comment) => {
        const p = /^position (\S+)/.exec(comment)?.[1];
        if (p) {
          // a fresh stream starts from "now": after a drop, resume from where it started
          last ??= p;
          opts.onOpen?.(p);
        }
      })) {
        if (m.id !== null) last = m.id;
        let data: unknown;
        try {
          data = JSON.parse(m.data);
        } catch {
          continue; // not ours to understand
        }
        yield { id: m.id ?? '', event: m.event, data } as StreamMessage;
      }
      // the server ended it (its maximum duration): resume
    } catch (err) {
      if (opts.signal?.aborted) return;
      opts.onDrop?.(err);
      await pause(RECONNECT_MS, opts.signal);
      continue;
    }
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
