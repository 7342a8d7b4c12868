// The tenant check, in one place: every /api/functions/:id[/…] route passes through this guard, so
// a route added later cannot forget it. Another user's function answers exactly like a missing one
// (404 function_not_found), before the route parses anything else.
//
// `:id` is the function's id, or the name of one of the caller's own functions (names are unique
// per user): the guard resolves a name to the id, which the route then reads with functionId(c).
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import type { Db } from '../../shared/db/knex.ts';
import type { LiveRoutes } from '../../shared/domain/live-routes.ts';
import { FUNCTION_NAME_PATTERN, UUID_PATTERN } from '../../shared/domain/model.ts';
import { errors } from '../../shared/errors.ts';
import type { AppEnv } from './app.ts';

export function requireOwnedFunction(db: Db, routes: LiveRoutes): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const ref = c.req.param('id') ?? '';
    if (UUID_PATTERN.test(ref)) {
      // the owner comes from the serving process's routing cache (an owner never changes; a deleted
      // function is dropped from it when the deletion is announced)
      const id = ref.toLowerCase();
      const route = await routes.get(id);
      if (!route || route.userId !== c.get('userId')) throw errors.functionNotFound();
      c.set('functionId', id);
      return next();
    }
    // Not a name (the route answers 400 for it), or a literal route's segment rather than a
    // function's: POST /api/functions/deploy deploys, whoever has a function named "deploy".
    if (!FUNCTION_NAME_PATTERN.test(ref) || !namesAFunction(c)) return next();
    const row = (await db.knex('functions').where({ user_id: c.get('userId'), name: ref }).first('id')) as { id: string } | undefined;
    if (!row) throw errors.functionNotFound();
    c.set('functionId', row.id);
    return next();
  };
}

/** Whether the route this request reaches (not a middleware) has `:id` for its function. */
function namesAFunction(c: Context): boolean {
  return matchedRoutes(c).some((r) => r.method !== 'ALL' && r.path.startsWith('/api/functions/:id'));
}
