// Which database errors mean "the database is not answering now" (a 503 worth retrying) rather
// than a bug (a 500). pg's connect timeout says just "timeout expired": timeouts of every kind, connections refused or cut, a server shutting down or
// out of connections, SQLite's write lock held past busy_timeout.

/** PostgreSQL SQLSTATEs: 57014 query_canceled (statement_timeout), 57P01-57P03 shutdown/cannot connect, 53300 too many connections, class 08 connection exceptions. */
const PG_UNAVAILABLE = /^(57014|57P0[123]|53300|08...)$/;
const NODE_UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
const MESSAGES =
  /Query read timeout|timeout exceeded when trying to connect|^timeout expired$|Connection terminated|Timeout acquiring a connection|Client has encountered a connection error|connection is closed/i;

export function isDatabaseUnavailable(err: unknown): boolean {
  const e = err as { name?: string; code?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  if (e.name === 'KnexTimeoutError') return true;
  const code = typeof e.code === 'string' ? e.code : '';
  if (PG_UNAVAILABLE.test(code) || NODE_UNAVAILABLE.has(code) || code === 'SQLITE_BUSY') return true;
  return typeof e.message === 'string' && MESSAGES.test(e.message);
}
