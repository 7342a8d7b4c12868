// The dashboard's browser session: an API token (made by the ordinary login machinery, named
// "browser") held in an HttpOnly, SameSite=Strict cookie, so the page's scripts never see it.
//
// A cookie is sent by the browser whoever made the request, so a change made with it must prove it
// came from our own page: the X-CSRF-Token header must carry the session's csrfToken, and an Origin
// header, when the browser sends one, must be ours. The csrfToken is an HMAC keyed by the session
// token itself: the server stores nothing, and a page on another origin cannot compute it (it never
// sees the cookie, and GET /api/auth/session answers only our own origin's scripts: no CORS).
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Config } from '../../shared/config.ts';
import type { TokenCache, TokenIdentity } from '../../shared/domain/tokens.ts';
import { errors } from '../../shared/errors.ts';

export const SESSION_COOKIE = 'cp_session';
/** The name the session's token is listed under (GET /api/auth/tokens). */
export const SESSION_TOKEN_NAME = 'browser';
export const CSRF_HEADER = 'X-CSRF-Token';
/** Browsers cap a cookie's lifetime at 400 days (and Hono refuses more); the token may outlive it. */
const MAX_COOKIE_SECONDS = 400 * 86_400;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** What a page on another origin cannot know: derived from the session token, stored nowhere. */
export function csrfTokenFor(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update('csrf').digest('base64url');
}

/** The first value of a header a proxy may have set as a list ("https, http"). */
function firstOf(value: string | undefined): string | undefined {
  const first = value?.split(',')[0]?.trim().toLowerCase();
  return first ? first : undefined;
}

/**
 * Whether the request reached us over https: the URL's own protocol, or, behind a proxy we trust
 * (TRUST_PROXY=on, which already lets it name the client's address), its X-Forwarded-Proto.
 */
export function requestIsHttps(c: Context, auth: Config['auth']): boolean {
  if (new URL(c.req.url).protocol === 'https:') return true;
  return auth.trustProxy && firstOf(c.req.header('x-forwarded-proto')) === 'https';
}

/**
 * The origins this site is reached at: the request's own, the one a trusted proxy says the client
 * used (X-Forwarded-Proto/-Host), and PUBLIC_URL's.
 */
export function ownOrigins(c: Context, config: Config): Set<string> {
  const url = new URL(c.req.url);
  const origins = new Set([url.origin.toLowerCase()]);
  if (config.auth.trustProxy) {
    const proto = firstOf(c.req.header('x-forwarded-proto')) ?? url.protocol.slice(0, -1);
    const host = firstOf(c.req.header('x-forwarded-host')) ?? url.host.toLowerCase();
    origins.add(`${proto}://${host}`);
  }
  if (config.uploads.publicUrl) origins.add(new URL(config.uploads.publicUrl).origin.toLowerCase());
  return origins;
}

/** An Origin header, when the browser sent one, names this site. */
export function checkOrigin(c: Context, config: Config): void {
  const origin = c.req.header('origin');
  if (origin === undefined) return;
  if (!ownOrigins(c, config).has(origin.trim().toLowerCase())) {
    throw errors.csrfFailed(`the request's Origin (${origin.slice(0, 200)}) is not this site's: a change made with the session cookie must come from the dashboard's own page`);
  }
}

/** A cookie-authenticated change (any method but GET, HEAD, OPTIONS) must come from our own page. */
export function checkCsrf(c: Context, config: Config, sessionToken: string): void {
  if (SAFE_METHODS.has(c.req.method.toUpperCase())) return;
  checkOrigin(c, config);
  const sent = c.req.header(CSRF_HEADER);
  if (!sent) throw errors.csrfFailed(`a change made with the session cookie needs the ${CSRF_HEADER} header (the csrfToken of GET /api/auth/session)`);
  const expected = Buffer.from(csrfTokenFor(sessionToken));
  const given = Buffer.from(sent);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw errors.csrfFailed(`the ${CSRF_HEADER} header does not match this session's csrfToken`);
  }
}

/** The session token the cookie carries, if any. */
export function sessionCookieOf(c: Context): string | undefined {
  const value = getCookie(c, SESSION_COOKIE);
  return value ? value : undefined;
}

/** The cookie's token, when it is a token that still works. */
export async function authenticateSessionCookie(c: Context, tokens: TokenCache): Promise<(TokenIdentity & { token: string }) | null> {
  const token = sessionCookieOf(c);
  if (!token) return null;
  const identity = await tokens.authenticate(token);
  return identity ? { ...identity, token } : null;
}

function secure(c: Context, auth: Config['auth']): boolean {
  if (auth.sessionCookieSecure === 'true') return true;
  if (auth.sessionCookieSecure === 'false') return false;
  return requestIsHttps(c, auth);
}

export function setSessionCookie(c: Context, auth: Config['auth'], token: string): void {
  setCookie(c, SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: 'Strict',
    path: '/',
    maxAge: Math.min(auth.tokenTtlDays * 86_400, MAX_COOKIE_SECONDS),
    secure: secure(c, auth),
  });
}

export function clearSessionCookie(c: Context, auth: Config['auth']): void {
  deleteCookie(c, SESSION_COOKIE, { httpOnly: true, sameSite: 'Strict', path: '/', secure: secure(c, auth) });
}
