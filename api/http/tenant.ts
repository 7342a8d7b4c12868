// The tenant check, in one place: every /api/functions/:id[/…] route passes through this guard, so
// a route added later cannot forget it. Another user's function answers exactly like a missing one
// (404 function_not_found), before the route parses anything else.
import type { MiddlewareHandler } from 'hono';
import type { LiveRoutes } from '../../shared/domain/live-routes.ts';
import { UUID_PATTERN } from '../../shared/domain/model.ts';
import { errors } from '../../shared/errors.ts';
import type { AppEnv } from './app.ts';

export function requireOwnedFunction(routes: LiveRoutes): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const id = c.req.param('id') ?? '';
    // not a function id: `POST /api/functions/deploy`, or a malformed id the route answers 400 for
    if (!UUID_PATTERN.test(id)) return next();
    // the owner comes from the serving process's routing cache (an owner never changes; a deleted
    // function is dropped from it when the deletion is announced)
    const route = await routes.get(id.toLowerCase());
    if (!route || route.userId !== c.get('userId')) throw errors.functionNotFound();
    await next();
  };
}
