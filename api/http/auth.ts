import type { MiddlewareHandler } from 'hono';
import { TokenCache } from '../../shared/domain/tokens.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { AppEnv } from './app.ts';
import { authenticateSessionCookie, checkCsrf } from './session.ts';

/** The token cache of one API: shared by the middleware and the routes that revoke tokens. */
export function createTokenCache(p: Platform): TokenCache {
  return new TokenCache(p.db, {
    onTouchError: (err) => p.logger.warn('could not record a token as used', { err: (err as Error)?.message ?? String(err) }),
  });
}

/**
 * The caller: an `Authorization: Bearer` header, as ever; without any Authorization header, the
 * dashboard's session cookie (session.ts), whose changes must carry the CSRF proof. A bad bearer
 * header is refused even when a good cookie comes with it: the header says what the client meant.
 */
export function requireUser(p: Platform, tokens: TokenCache = createTokenCache(p)): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (header === undefined) {
      const session = await authenticateSessionCookie(c, tokens);
      if (!session) throw errors.unauthorized('missing or invalid bearer token or session cookie');
      checkCsrf(c, p.config, session.token);
      c.set('userId', session.userId);
      c.set('tokenId', session.tokenId);
      return next();
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw errors.unauthorized();
    const identity = await tokens.authenticate(match[1]!);
    if (!identity) throw errors.unauthorized();
    c.set('userId', identity.userId);
    c.set('tokenId', identity.tokenId);
    await next();
  };
}
