// The dashboard's browser session (api/http/session.ts):
// POST /api/auth/session {email, password} signs in and sets the cp_session cookie,
// GET /api/auth/session says who the cookie belongs to (and its csrfToken, after a reload),
// DELETE /api/auth/session revokes the session's token and clears the cookie.
import { getUser, loginUser } from '../../shared/domain/auth.ts';
import { revokeToken, type TokenCache } from '../../shared/domain/tokens.ts';
import { errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import type { App } from '../http/app.ts';
import type { AuthAttemptLimit } from '../http/rate-limit.ts';
import {
  authenticateSessionCookie,
  checkCsrf,
  checkOrigin,
  clearSessionCookie,
  csrfTokenFor,
  SESSION_TOKEN_NAME,
  setSessionCookie,
} from '../http/session.ts';
import { jsonBody } from '../http/validation.ts';
import { loginSchema } from './auth.ts';

export const sessionSignInSchema = loginSchema;

export interface SessionRoutesOptions {
  /** the login attempts' limiter: signing in here counts against the same buckets */
  limit: AuthAttemptLimit;
  /** the API's token cache: a signed-out session stops working at once in this process */
  tokens: TokenCache;
}

export function register(app: App, p: Platform, opts: SessionRoutesOptions): void {
  const session = { tokenTtlDays: p.config.auth.tokenTtlDays, tokenName: SESSION_TOKEN_NAME };
  const sessionView = async (userId: string, token: string) => ({ ...(await getUser(p.db, userId)), csrfToken: csrfTokenFor(token) });

  app.post('/api/auth/session', async (c) => {
    // no session yet, so no CSRF token: a foreign page must not sign the browser in to its account
    checkOrigin(c, p.config);
    const body = await jsonBody(c, sessionSignInSchema);
    opts.limit(c, body.email);
    const signedIn = await loginUser(p.db, body.email, body.password, session);
    setSessionCookie(c, p.config.auth, signedIn.token);
    return c.json(await sessionView(signedIn.userId, signedIn.token), 200);
  });

  app.get('/api/auth/session', async (c) => {
    const current = await authenticateSessionCookie(c, opts.tokens);
    if (!current) throw errors.unauthorized('not signed in: no valid session cookie');
    return c.json(await sessionView(current.userId, current.token));
  });

  app.delete('/api/auth/session', async (c) => {
    const current = await authenticateSessionCookie(c, opts.tokens);
    if (!current) throw errors.unauthorized('not signed in: no valid session cookie');
    checkCsrf(c, p.config, current.token);
    await revokeToken(p.db, current.userId, current.tokenId);
    opts.tokens.forget(current.tokenId);
    clearSessionCookie(c, p.config.auth);
    return c.body(null, 204);
  });
}
