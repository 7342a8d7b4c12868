// The dashboard's one way to the API: same origin, the session cookie, and the CSRF token on every
// change. Every failure becomes an ApiError carrying the API's own words (its error envelope), so
// a page can show it as it is instead of swallowing it.

/** the CSRF token of this session: POST/GET /api/auth/session give it, every change sends it */
let csrfToken = null;

export function setCsrfToken(token) {
  csrfToken = token ?? null;
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** What a person reads for an error: the API's message, and its code for a search or a bug report. */
export function errorText(err) {
  if (err instanceof ApiError) {
    return `${err.message} (${err.code}, HTTP ${err.status})`;
  }
  return err?.message ? `Network error: ${err.message}` : String(err);
}

const listeners = new Set();
/** Called with every 401: the page goes back to sign-in. */
export function onSignedOut(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * A request to the API. `json` is sent as JSON, `form` as multipart; the answer's JSON body is
 * returned (null for 204). Throws ApiError for any answer that is not 2xx.
 */
export async function api(method, path, { json, jsonText, form, signal } = {}) {
  const headers = { accept: 'application/json' };
  let body;
  if (json !== undefined || jsonText !== undefined) {
    headers['content-type'] = 'application/json';
    // jsonText: JSON as the user typed it, sent as typed (the API says whether it parses)
    body = jsonText ?? JSON.stringify(json);
  } else if (form) body = form;
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, { method, headers, body, signal, credentials: 'same-origin' });
  const text = await res.text();
  let parsed = null;
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!res.ok) {
    const e = parsed?.error;
    const err = new ApiError(res.status, e?.code ?? `http_${res.status}`, e?.message ?? (text.slice(0, 300) || res.statusText), e?.details);
    if (res.status === 401 && !path.startsWith('/api/auth/session')) for (const fn of listeners) fn(err);
    throw err;
  }
  return parsed;
}

/** /api/functions/{name}…: a function's routes take its name. */
export const fnPath = (name, rest = '') => `/api/functions/${encodeURIComponent(name)}${rest}`;
