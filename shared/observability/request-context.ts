// The request a piece of work is done for, carried across awaits (AsyncLocalStorage): every log
// line written while serving a request, or while building the deployment a request created,
// carries its id without the id being passed down by hand.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

export interface RequestContext {
  requestId: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** The id of the request the current work is done for, if any. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}

/** Runs `fn` (and everything it awaits or schedules) on behalf of request `requestId`. */
export function withRequestId<T>(requestId: string, fn: () => T): T {
  return storage.run({ requestId }, fn);
}

/**
 * Runs `fn` outside any request: a batch written later for many requests (a timer set while serving
 * one) must not log with the id of whichever request happened to start it.
 */
export function outsideRequest<T>(fn: () => T): T {
  return storage.exit(fn);
}

/**
 * A caller's X-Request-Id is honoured when it is a plain token (letters, digits and `._:-`, up to
 * 128 characters): it lands in log lines and records, so nothing that could forge a log field or
 * bloat one. Anything else gets a fresh UUID.
 */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFrom(header: string | null | undefined): string {
  const v = header?.trim();
  return v && SANE_REQUEST_ID.test(v) ? v : randomUUID();
}
