// The app factory: one error envelope, one place that turns errors into responses.
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { isAppError, type AppError } from '../../shared/errors.ts';
import { isDependencyOutage, OUTAGE_RETRY_AFTER_SECONDS } from '../../shared/outage.ts';
import type { Platform } from '../../shared/platform.ts';

export interface AppEnv {
  Variables: {
    userId: string;
    /** the bearer token the request was made with */
    tokenId: string;
    /** the caller's function that /api/functions/:id names, by id or by name (tenant.ts) */
    functionId?: string;
  };
}

export type App = Hono<AppEnv>;

export function errorBody(code: string, message: string, details?: Record<string, unknown>) {
  return { error: { code, message, ...(details ? { details } : {}) } };
}

/** An error as the platform answers it: status, envelope and extra headers, in one place. */
export interface ErrorAnswer {
  status: ContentfulStatusCode;
  code: string;
  body: ReturnType<typeof errorBody>;
  headers: Record<string, string>;
}

function answer(status: number, code: string, message: string, details?: Record<string, unknown>, headers: Record<string, string> = {}): ErrorAnswer {
  return {
    status: status as ContentfulStatusCode,
    code,
    body: errorBody(code, message, details),
    // every platform error says so, so that a caller can tell it from an answer of a function
    headers: { 'X-ContainerPub-Error': code, ...headers },
  };
}

/** How an AppError is answered (also outside Hono: serveApi's 503 when too many requests wait). */
export function appErrorAnswer(err: AppError): ErrorAnswer {
  const headers: Record<string, string> = {};
  // The client may still be sending a body we will not read: do not reuse the connection.
  if (err.status === 413) headers.Connection = 'close';
  if (err.status === 401) headers['WWW-Authenticate'] = 'Bearer realm="containerpub"';
  if (err.retryAfterSeconds !== undefined) headers['Retry-After'] = String(err.retryAfterSeconds);
  return answer(err.status, err.code, err.message, err.details, headers);
}

export function errorAnswer(p: Platform, err: unknown, where: { method: string; path: string }): ErrorAnswer {
  if (isAppError(err)) return appErrorAnswer(err);
  if (err instanceof HTTPException) {
    const status = err.status;
    const code = status === 413 ? 'payload_too_large' : status >= 500 ? 'internal' : 'bad_request';
    return answer(status, code, err.message || 'request refused');
  }
  if (isDependencyOutage(err)) {
    // the error itself (its type, code and cause): which dependency, and how it failed (refused, reset, timed out)
    p.logger.warn('a dependency is not answering', { ...where, err });
    return answer(503, 'unavailable', 'a service the platform depends on is not answering; try again shortly', undefined, {
      'Retry-After': String(OUTAGE_RETRY_AFTER_SECONDS),
    });
  }
  p.logger.error('unhandled error', { ...where, err });
  return answer(500, 'internal', 'internal server error');
}

export function createHonoApp(p: Platform): App {
  const app = new Hono<AppEnv>();
  app.onError((err, c) => {
    const a = errorAnswer(p, err, { method: c.req.method, path: c.req.path });
    for (const [name, value] of Object.entries(a.headers)) c.header(name, value);
    return c.json(a.body, a.status);
  });
  app.notFound((c) => {
    c.header('X-ContainerPub-Error', 'not_found');
    return c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404);
  });
  return app;
}
