// What the image code needs to tell about the Docker engine's answers: whether a failure is the
// engine (or the registry behind it) being unreachable, which the build queue waits out, or a real
// refusal; and a timeout for engine streams (a push, a load) that only fires when nothing moves.
import type { Readable } from 'node:stream';

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** A dockerode error that came with no answer from the engine (its socket refused, reset, absent). */
export function engineUnreachable(err: unknown): boolean {
  const e = err as { code?: string; statusCode?: number } | null;
  return e?.statusCode === undefined && UNREACHABLE_CODES.has(e?.code ?? '');
}

/** The engine's own message from a dockerode error (its JSON body), else the error's message. */
export function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; message?: string };
  return (e?.json?.message ?? e?.message ?? String(err)).trim();
}

// What the engine says when the registry it pushes to or pulls from is down or failing (as opposed
// to refusing what was asked).
const REGISTRY_DOWN = /connection refused|connection reset|no such host|i\/o timeout|timeout exceeded|unexpected EOF|\b50[0-4]\b|Internal Server Error|Bad Gateway|Service Unavailable/i;

/** Whether an error event of an engine push/pull stream says the registry is unreachable or failing. */
export function registryDownInEngineMessage(message: string): boolean {
  return REGISTRY_DOWN.test(message);
}

/**
 * A signal that aborts when `signal` does, or when `stream` has been silent for `idleMs` (a push or
 * load that stalls). A large transfer that keeps moving is never cut. `stop()` clears the timer.
 */
export function idleSignal(stream: Readable, idleMs: number, signal?: AbortSignal): { signal: AbortSignal; stop(): void } {
  const idle = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new Error(`the engine sent nothing for ${idleMs} ms`)), idleMs);
    timer.unref();
  };
  arm();
  stream.on('data', arm);
  return {
    signal: signal ? AbortSignal.any([signal, idle.signal]) : idle.signal,
    stop() {
      clearTimeout(timer);
      stream.off('data', arm);
    },
  };
}
