// Tells a dependency that is down (S3, the database) from a bug. The API answers the first with
// 503 `unavailable` and Retry-After (the client should simply try again), the second with 500.
// Only connection-level failures count: an S3 or SQL error that was answered is not an outage.
import { isDatabaseUnavailable } from './db/errors.ts';

/** Seconds a client is asked to wait after an outage answer. */
export const OUTAGE_RETRY_AFTER_SECONDS = 5;

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  'ECONNABORTED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET',
]);

// The AWS SDK's names for a request that got no answer, or that S3 refused as overloaded.
const SDK_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'NetworkingError', 'AbortError', 'ServiceUnavailable', 'SlowDown']);

function oneIsOutage(e: Record<string, unknown>): boolean {
  const code = typeof e.code === 'string' ? e.code : undefined;
  const name = typeof e.name === 'string' ? e.name : undefined;
  const message = typeof e.message === 'string' ? e.message : '';
  if (code && NETWORK_CODES.has(code)) return true;
  // shared/runtime/types.ts: S3, the registry, the engine or npm down, as the platform itself saw it
  if (name === 'InfrastructureError') return true;
  if (name && SDK_NAMES.has(name)) return true;
  if (/socket hang up|connect ECONNREFUSED/i.test(message)) return true;
  // the database's own ways of saying so (timeouts, shutdown, no connection, SQLite's lock)
  return isDatabaseUnavailable(e);
}

/** Whether `err` (or what it wraps: `cause`, AggregateError's `errors`) is a dependency outage. */
export function isDependencyOutage(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const e = err as Record<string, unknown>;
  if (oneIsOutage(e)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isDependencyOutage(x, depth + 1))) return true;
  return isDependencyOutage(e.cause, depth + 1);
}
