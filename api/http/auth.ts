import type { MiddlewareHandler } from 'hono';
import { TokenCache } from '../../shared/domain/auth.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { AppEnv } from './app.ts';

export function requireUser(p: Platform): MiddlewareHandler<AppEnv> {
  const tokens = new TokenCache(p.db);
  return async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw errors.unauthorized();
    const userId = await tokens.authenticate(match[1]!);
    if (!userId) throw errors.unauthorized();
    c.set('userId', userId);
    await next();
  };
}
