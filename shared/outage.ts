// Tells a dependency that is down (S3, the database) from a bug. The API answers the first with
// 503 `unavailable` and Retry-After (the client should simply try again), the second with 500.
// Only connection-level failures count: an S3 or SQL error that was answered is not an outage.

/** Seconds a client is asked to wait after an outage answer. */
export const OUTAGE_RETRY_AFTER_SECONDS = 5;

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE',
  'ECONNABORTED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET',
]);

// The AWS SDK's names for a request that got no answer, or that S3 refused as overloaded.
const SDK_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'NetworkingError', 'AbortError', 'ServiceUnavailable', 'SlowDown']);

// PostgreSQL SQLSTATE classes 08 (connection exception) and 57P0x (server shutting down / starting).
const PG_OUTAGE = /^(08...|57P0[1-4]|53300)$/;

function oneIsOutage(e: Record<string, unknown>): boolean {
  const code = typeof e.code === 'string' ? e.code : undefined;
  const name = typeof e.name === 'string' ? e.name : undefined;
  const message = typeof e.message === 'string' ? e.message : '';
  if (code && (NETWORK_CODES.has(code) || PG_OUTAGE.test(code))) return true;
  if (name === 'KnexTimeoutError') return true; // no connection could be had from the pool
  if (name && SDK_NAMES.has(name)) return true;
  if (/socket hang up|Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect/i.test(message)) return true;
  if (code === 'SQLITE_BUSY') return true; // another process holds the write lock past busy_timeout
  return false;
}

/** Whether `err` (or what it wraps: `cause`, AggregateError's `errors`) is a dependency outage. */
export function isDependencyOutage(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const e = err as Record<string, unknown>;
  if (oneIsOutage(e)) return true;
  if (Array.isArray(e.errors) && e.errors.some((x) => isDependencyOutage(x, depth + 1))) return true;
  return isDependencyOutage(e.cause, depth + 1);
}
