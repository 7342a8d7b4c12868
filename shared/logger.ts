// Structured, scoped logs (pino): one JSON object a line, carrying the ids of what the line is about,
// and the id of the request that caused it (shared/observability/request-context.ts). Errors keep
// their stacks. LOG_FORMAT=pretty renders the same lines readably (the default on a terminal).
// Never pass tokens, passwords, presigned URLs or whole config objects as fields: fields with such
// names are redacted, and every line is scrubbed of secret values and tokens before it is written
// (shared/observability/redact.ts), but the rule stands.
import pino from 'pino';
import { prettyFactory } from 'pino-pretty';
import { currentRequestId } from './observability/request-context.ts';
import { REDACT_PATHS, REDACTED, scrubLine } from './observability/redact.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'json' | 'pretty';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

/** An error as a log field: its type, message and stack (and code and cause, when it has them). */
export interface SerializedError {
  type: string;
  message: string;
  stack?: string;
  code?: unknown;
  cause?: unknown;
}

const MAX_DEPTH = 4;

function serializeError(err: Error, depth: number): SerializedError {
  const out: SerializedError = { type: err.name || err.constructor?.name || 'Error', message: err.message, stack: err.stack };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (err.cause !== undefined) out.cause = normalize(err.cause, depth + 1);
  return out;
}

/** Errors anywhere in the fields (nested objects and arrays too) become {type, message, stack}. */
function normalize(value: unknown, depth = 0): unknown {
  if (value instanceof Error) return serializeError(value, depth);
  if (depth >= MAX_DEPTH || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.some((v) => v !== null && typeof v === 'object') ? value.map((v) => normalize(v, depth + 1)) : value;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  let changed: Record<string, unknown> | null = null;
  for (const [k, v] of Object.entries(value)) {
    const n = v !== null && typeof v === 'object' ? normalize(v, depth + 1) : v;
    if (n !== v) (changed ??= { ...(value as Record<string, unknown>) })[k] = n;
  }
  return changed ?? value;
}

function pinoLogger(level: LogLevel, write: (line: string) => void, format: LogFormat): pino.Logger {
  const prettify = format === 'pretty' ? prettyFactory({ colorize: Boolean(process.stderr.isTTY) && !process.env.NO_COLOR, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }) : null;
  const destination = {
    // synchronous and in-process: a line is out before the next statement (and before an exit)
    write(chunk: string) {
      const line = scrubLine(chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk);
      write(prettify ? prettify(line).replace(/\n$/, '') : line);
    },
  };
  return pino(
    {
      level,
      base: null,
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // errors are serialized by normalize() wherever they sit, not only under `err`
      serializers: { err: (v: unknown) => v },
      mixin() {
        const requestId = currentRequestId();
        return requestId ? { requestId } : {};
      },
      redact: { paths: REDACT_PATHS, censor: REDACTED },
    },
    destination,
  );
}

function wrap(log: pino.Logger): Logger {
  const at = (lvl: 'debug' | 'info' | 'warn' | 'error') => (msg: string, fields?: Record<string, unknown>) => {
    if (!log.isLevelEnabled(lvl)) return;
    if (fields) log[lvl](normalize(fields) as object, msg);
    else log[lvl](msg);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (fields) => wrap(log.child(normalize(fields) as Record<string, unknown>)),
  };
}

/**
 * A logger writing one line per entry to `write` (stderr by default). `format`: LOG_FORMAT; without
 * it, pretty when writing to a terminal's stderr, JSON otherwise (and always JSON into a `write`
 * sink, which tests and log collectors parse).
 */
export function createLogger(
  level: LogLevel = 'info',
  base: Record<string, unknown> = {},
  write?: (line: string) => void,
  format?: LogFormat,
): Logger {
  const fmt = format ?? (!write && process.stderr.isTTY ? 'pretty' : 'json');
  const log = pinoLogger(level, write ?? ((line) => process.stderr.write(line + '\n')), fmt);
  return wrap(Object.keys(base).length > 0 ? log.child(normalize(base) as Record<string, unknown>) : log);
}
