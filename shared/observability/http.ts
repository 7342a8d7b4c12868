// What every API request gets: an id (the caller's X-Request-Id when it is sane, else a fresh one),
// answered in X-Request-Id and carried by every log line written while it is served; and a count
// and a duration in the HTTP metrics, labelled by its route template, never by its raw path.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { PlatformMetrics } from './metrics.ts';
import { requestIdFrom, withRequestId } from './request-context.ts';

/** The label of requests that matched no route (a 404 from the not-found handler). */
export const UNMATCHED_ROUTE = 'unmatched';
/** The label of endpoint requests (/fn/… and function host names): one template for all of them. */
export const ENDPOINT_ROUTE = '/fn/*';

/** The template of the route that answered: a handler's path, or the middleware that answered (auth). */
function routeTemplate(c: Context): string {
  const route = matchedRoutes(c)[c.req.routeIndex];
  if (!route) return UNMATCHED_ROUTE;
  // everything ran through to the not-found handler: the last route is a middleware that called next
  if (c.res.status === 404 && route.handler.length >= 2 && !c.error) return UNMATCHED_ROUTE;
  return route.path;
}

/*
 * When the server got a request: under load it may wait for a turn of the event loop before any
 * handler runs (api/http/turns.ts), and its duration counts that wait.
 */
const arrivals = new WeakMap<IncomingMessage, number>();

export function markArrival(req: IncomingMessage): void {
  arrivals.set(req, performance.now());
}

function arrivalOf(req: IncomingMessage | undefined): number {
  return (req && arrivals.get(req)) ?? performance.now();
}

export function observeRequests(metrics: PlatformMetrics): MiddlewareHandler {
  return async (c, next) => {
    const started = arrivalOf((c.env as { incoming?: IncomingMessage } | undefined)?.incoming);
    const requestId = requestIdFrom(c.req.header('x-request-id'));
    c.header('X-Request-Id', requestId);
    try {
      await withRequestId(requestId, () => next());
    } finally {
      // a handler that returned a Response of its own did not get the header
      try {
        if (!c.res.headers.has('x-request-id')) c.res.headers.set('X-Request-Id', requestId);
      } catch {
        // immutable headers (a proxied response): it goes without
      }
      metrics.observeHttp(c.req.method, routeTemplate(c), c.res.status, (performance.now() - started) / 1000);
    }
  };
}

/**
 * Endpoint requests are served by a Node listener ahead of Hono (api/routes/endpoint.ts): the same
 * id and metrics, with one fixed route label. `serve` gets the request's id.
 */
export function observeEndpointRequest(
  metrics: PlatformMetrics,
  req: IncomingMessage,
  res: ServerResponse,
  serve: (requestId: string) => Promise<void>,
): void {
  const started = arrivalOf(req);
  const raw = req.headers['x-request-id'];
  const requestId = requestIdFrom(Array.isArray(raw) ? raw[0] : raw);
  res.once('close', () => metrics.observeHttp(req.method ?? 'GET', ENDPOINT_ROUTE, res.statusCode, (performance.now() - started) / 1000));
  void withRequestId(requestId, () => serve(requestId));
}

/** Whether an Authorization header carries `Bearer <token>` (compared in constant time). */
export function bearerMatches(header: string | null | undefined, token: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header?.trim() ?? '');
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]!.trim()), digest(token));
}
