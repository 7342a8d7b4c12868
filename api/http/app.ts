// The app factory: one error envelope, one place that turns errors into responses.
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { isAppError } from '../../shared/errors.ts';
import { isDependencyOutage, OUTAGE_RETRY_AFTER_SECONDS } from '../../shared/outage.ts';
import type { Platform } from '../../shared/platform.ts';

export interface AppEnv {
  Variables: { userId: string; /** the bearer token the request was made with */ tokenId: string };
}

export type App = Hono<AppEnv>;

export function errorBody(code: string, message: string, details?: Record<string, unknown>) {
  return { error: { code, message, ...(details ? { details } : {}) } };
}

export function createHonoApp(p: Platform): App {
  const app = new Hono<AppEnv>();
  app.onError((err, c) => {
    if (isAppError(err)) {
      // The client may still be sending a body we will not read: do not reuse the connection.
      if (err.status === 413) c.header('Connection', 'close');
      if (err.retryAfterSeconds !== undefined) c.header('Retry-After', String(err.retryAfterSeconds));
      return c.json(errorBody(err.code, err.message, err.details), err.status as ContentfulStatusCode);
    }
    if (err instanceof HTTPException) {
      const status = err.status as ContentfulStatusCode;
      const code = status === 413 ? 'payload_too_large' : status >= 500 ? 'internal' : 'bad_request';
      return c.json(errorBody(code, err.message || 'request refused'), status);
    }
    if (isDependencyOutage(err)) {
      p.logger.warn('a dependency is not answering', { method: c.req.method, path: c.req.path, err: (err as Error).message });
      c.header('Retry-After', String(OUTAGE_RETRY_AFTER_SECONDS));
      return c.json(errorBody('unavailable', 'a service the platform depends on is not answering; try again shortly'), 503);
    }
    p.logger.error('unhandled error', { method: c.req.method, path: c.req.path, err: (err as Error).stack ?? String(err) });
    return c.json(errorBody('internal', 'internal server error'), 500);
  });
  app.notFound((c) => c.json(errorBody('not_found', `no route for ${c.req.method} ${c.req.path}`), 404));
  return app;
}

