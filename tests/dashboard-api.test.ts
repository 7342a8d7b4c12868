// The dashboard's server half (SQLite and PostgreSQL): the browser session (an HttpOnly SameSite
// cookie), cookie authentication with its CSRF proof on every change, sign-out that revokes, the
// function list's last hour from real invocations, and the page and its files served with their
// security headers, refusing traversal.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Hono } from 'hono';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { setSessionCookie } from '../api/http/session.ts';
import { DASHBOARD_CSP } from '../api/routes/dashboard.ts';
import { loadConfig } from '../shared/config.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployAndBuild } from './support/flows.ts';
import { client, type Reply } from './support/http.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { waitFor } from './support/services.ts';

// Per email: register + 2 attempts pass, the 4th is refused (the rate-limit test counts on it; every
// other test signs each account in once).
const started = await startTestPlatform({ METRICS_FLUSH_MS: '100', AUTH_RATE_LIMIT_PER_EMAIL_PER_MINUTE: '3' }, { runner: true });
if (!started) process.exit(0);
const tp = started as TestPlatform;
const PASSWORD = 'correct horse battery';
let accounts = 0;

function assertError(res: Reply, status: number, code: string) {
  assert.is(res.status, status, JSON.stringify(res.body));
  assert.is(res.body?.error?.code, code, JSON.stringify(res.body));
}

/** The cookie's value from a Set-Cookie header, and its attributes (lower case). */
function parseSetCookie(header: string | null) {
  assert.ok(header, 'a Set-Cookie header');
  const [pair, ...attrs] = header!.split(';').map((s) => s.trim());
  const [name, value] = [pair!.slice(0, pair!.indexOf('=')), pair!.slice(pair!.indexOf('=') + 1)];
  return { name, value, attrs: attrs.map((a) => a.toLowerCase()) };
}

/** A new account, signed in the way the dashboard does it: a client sending only the cookie. */
async function browser() {
  const email = `dash${++accounts}-${process.pid}-${Date.now()}@example.com`;
  const reg = await tp.http.post('/api/auth/register', { email, password: PASSWORD });
  assert.is(reg.status, 201, JSON.stringify(reg.body));
  const signIn = await tp.http.post('/api/auth/session', { email, password: PASSWORD });
  assert.is(signIn.status, 200, JSON.stringify(signIn.body));
  const cookie = parseSetCookie(signIn.headers.get('set-cookie'));
  const jar = `${cookie.name}=${cookie.value}`;
  const c = client(tp.url);
  /** with the cookie; `csrf`: the X-CSRF-Token header; `headers`: any others */
  const send = (method: string, p: string, opts: { json?: unknown; body?: RequestInit['body']; csrf?: string | null; headers?: Record<string, string> } = {}) =>
    c.request(method, p, {
      json: opts.json,
      body: opts.body,
      token: null,
      headers: { cookie: jar, ...(opts.csrf ? { 'x-csrf-token': opts.csrf } : {}), ...(opts.headers ?? {}) },
    });
  return { email, cookie, jar, session: signIn.body, bearer: client(tp.url, reg.body.token), send, csrf: signIn.body.csrfToken as string };
}

// ---------------------------------------------------------------------------------------------
const session = suite('browser session');

session('sign-in answers the account and a csrfToken, and sets an HttpOnly SameSite=Strict cookie (not Secure over http)', async () => {
  const b = await browser();
  assert.equal(Object.keys(b.session).sort(), ['csrfToken', 'email', 'handle', 'userId']);
  assert.is(b.session.email, b.email);
  assert.match(b.session.csrfToken, /^[A-Za-z0-9_-]{43}$/);
  assert.is(b.cookie.name, 'cp_session');
  assert.match(b.cookie.value, /^cp_/);
  assert.ok(b.cookie.attrs.includes('httponly'), b.cookie.attrs.join('; '));
  assert.ok(b.cookie.attrs.includes('samesite=strict'), b.cookie.attrs.join('; '));
  assert.ok(b.cookie.attrs.includes('path=/'), b.cookie.attrs.join('; '));
  assert.ok(b.cookie.attrs.includes(`max-age=${30 * 86_400}`), b.cookie.attrs.join('; '));
  assert.not.ok(b.cookie.attrs.includes('secure'), 'plain http: no Secure');
  // the token the cookie holds never reaches the page's scripts
  assert.not.ok(JSON.stringify(b.session).includes(b.cookie.value));
  // a token made by the login machinery, listed as "browser"
  const tokens = (await b.bearer.get('/api/auth/tokens')).body.tokens;
  assert.equal(tokens.map((t: any) => t.name).sort(), ['browser', 'login']);

  // after a reload: the same answer from the cookie alone
  const again = await b.send('GET', '/api/auth/session');
  assert.is(again.status, 200, JSON.stringify(again.body));
  assert.equal(again.body, b.session);
  // the cookie authenticates the API
  const list = await b.send('GET', '/api/functions');
  assert.is(list.status, 200, JSON.stringify(list.body));
  assert.equal(list.body.functions, []);
  const me = await b.send('GET', '/api/auth/me');
  assert.is(me.body.userId, b.session.userId);
});

session('wrong credentials are the 401 of login, with no cookie; bad bodies are 400s; no cookie is a 401', async () => {
  const b = await browser();
  for (const body of [{ email: b.email, password: 'wrong password' }, { email: 'nobody@example.com', password: PASSWORD }]) {
    const res = await tp.http.post('/api/auth/session', body);
    assertError(res, 401, 'invalid_credentials');
    assert.is(res.headers.get('set-cookie'), null);
  }
  for (const body of [{}, { email: b.email }, { email: '', password: 'x' }, { email: 5, password: 'x' }]) {
    assertError(await tp.http.post('/api/auth/session', body), 400, 'validation_failed');
  }
  assertError(await tp.http.request('POST', '/api/auth/session', { body: '{nope', headers: { 'content-type': 'application/json' } }), 400, 'invalid_json');
  assertError(await tp.http.get('/api/auth/session'), 401, 'unauthorized');
  assertError(await tp.http.get('/api/auth/session', { headers: { cookie: 'cp_session=cp_forged' } }), 401, 'unauthorized');
  assertError(await tp.http.get('/api/functions', { headers: { cookie: 'cp_session=cp_forged' } }), 401, 'unauthorized');
  // another site's page cannot sign the browser in to an account of its choosing
  const foreign = await tp.http.post('/api/auth/session', { email: b.email, password: PASSWORD }, { headers: { origin: 'https://evil.example' } });
  assertError(foreign, 403, 'csrf_failed');
  assert.is(foreign.headers.get('set-cookie'), null);
});

session('sign-in shares the rate limit of login: per email, whichever route is used', async () => {
  const email = `limited-${process.pid}-${Date.now()}@example.com`;
  assert.is((await tp.http.post('/api/auth/register', { email, password: PASSWORD })).status, 201);
  assert.is((await tp.http.post('/api/auth/login', { email, password: PASSWORD })).status, 200);
  assert.is((await tp.http.post('/api/auth/session', { email, password: PASSWORD })).status, 200);
  const refused = await tp.http.post('/api/auth/session', { email, password: PASSWORD });
  assertError(refused, 429, 'rate_limited');
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  assertError(await tp.http.post('/api/auth/login', { email, password: PASSWORD }), 429, 'rate_limited');
});

session('the Secure attribute: over https, from a trusted proxy only, or as SESSION_COOKIE_SECURE says', async () => {
  const cookieFor = async (env: Record<string, string>, url: string, headers: Record<string, string> = {}) => {
    const config = loadConfig({ DATA_DIR: tp.dataDir, ...env });
    const app = new Hono();
    app.get('/', (c) => {
      setSessionCookie(c, config.auth, 'cp_x');
      return c.body(null, 204);
    });
    return parseSetCookie((await app.request(url, { headers })).headers.get('set-cookie')).attrs.includes('secure');
  };
  assert.is(await cookieFor({}, 'https://dash.example/'), true);
  assert.is(await cookieFor({}, 'http://dash.example/'), false);
  assert.is(await cookieFor({}, 'http://dash.example/', { 'x-forwarded-proto': 'https' }), false, 'an untrusted X-Forwarded-Proto is ignored');
  assert.is(await cookieFor({ TRUST_PROXY: 'on' }, 'http://dash.example/', { 'x-forwarded-proto': 'https' }), true);
  assert.is(await cookieFor({ SESSION_COOKIE_SECURE: 'true' }, 'http://dash.example/'), true);
  assert.is(await cookieFor({ SESSION_COOKIE_SECURE: 'false' }, 'https://dash.example/'), false);
  assert.throws(() => loadConfig({ DATA_DIR: tp.dataDir, SESSION_COOKIE_SECURE: 'yes' }), /SESSION_COOKIE_SECURE/);
});

// ---------------------------------------------------------------------------------------------
const csrf = suite('CSRF on changes made with the cookie');

csrf('a change with the cookie needs X-CSRF-Token; a wrong one or a foreign Origin is refused; with it, it works', async () => {
  const b = await browser();
  const deploy = (opts: { csrf?: string | null; headers?: Record<string, string> }) =>
    b.send('POST', '/api/functions/deploy', { json: { name: 'from-browser', ...declaration() }, ...opts });

  const missing = await deploy({});
  assertError(missing, 403, 'csrf_failed');
  assert.match(missing.body.error.message, /X-CSRF-Token/);
  const wrong = await deploy({ csrf: 'A'.repeat(43) });
  assertError(wrong, 403, 'csrf_failed');
  assert.match(wrong.body.error.message, /does not match/);
  // another user's csrfToken is no proof for this session
  assertError(await deploy({ csrf: (await browser()).csrf }), 403, 'csrf_failed');
  const foreign = await deploy({ csrf: b.csrf, headers: { origin: 'https://evil.example' } });
  assertError(foreign, 403, 'csrf_failed');
  assert.match(foreign.body.error.message, /Origin/);
  assertError(await deploy({ csrf: b.csrf, headers: { origin: 'null' } }), 403, 'csrf_failed');
  assert.equal((await b.send('GET', '/api/functions')).body.functions, [], 'nothing refused was deployed');

  const made = await deploy({ csrf: b.csrf, headers: { origin: tp.url } });
  assert.is(made.status, 201, JSON.stringify(made.body));
  const id = made.body.id as string;
  assertError(await b.send('PATCH', `/api/functions/${id}`, { json: { access: 'public' } }), 403, 'csrf_failed');
  const patched = await b.send('PATCH', `/api/functions/${id}`, { json: { access: 'public' }, csrf: b.csrf });
  assert.is(patched.status, 200, JSON.stringify(patched.body));
  assert.is(patched.body.access, 'public');
  // reads need no proof
  assert.is((await b.send('GET', `/api/functions/${id}/deployments`)).status, 200);

  // the multipart deploy, as the page uploads a .tar.gz
  const archive = await makeNodeFunction('export default async () => ({ uploaded: true });\n');
  const form = () => {
    const f = new FormData();
    f.set('name', 'uploaded');
    f.set('archive', new Blob([new Uint8Array(archive)]), 'function.tar.gz');
    return f;
  };
  assertError(await b.send('POST', '/api/functions/deploy', { body: form() }), 403, 'csrf_failed');
  const uploaded = await b.send('POST', '/api/functions/deploy', { body: form(), csrf: b.csrf });
  assert.is(uploaded.status, 201, JSON.stringify(uploaded.body));
  // and every other guarded change: invoke, tokens, logout
  assertError(await b.send('POST', `/api/functions/${id}/invoke`, { json: {} }), 403, 'csrf_failed');
  assertError(await b.send('POST', '/api/auth/tokens', { json: { name: 'x' } }), 403, 'csrf_failed');
  assertError(await b.send('POST', '/api/auth/logout'), 403, 'csrf_failed');
});

csrf('a bearer token needs no CSRF header, and a bad Authorization header is not rescued by a good cookie', async () => {
  const b = await browser();
  const made = await b.bearer.post('/api/functions/deploy', { name: 'by-token', ...declaration() });
  assert.is(made.status, 201, JSON.stringify(made.body));
  const patched = await b.bearer.request('PATCH', `/api/functions/${made.body.id}`, { json: { access: 'key' }, headers: { origin: 'https://elsewhere.example' } });
  assert.is(patched.status, 200, JSON.stringify(patched.body));
  const bad = await b.send('GET', '/api/functions', { headers: { authorization: 'Bearer cp_not-a-token' } });
  assertError(bad, 401, 'unauthorized');
  const notBearer = await b.send('POST', '/api/functions/deploy', { json: { name: 'x', ...declaration() }, csrf: b.csrf, headers: { authorization: 'Basic eDp5' } });
  assertError(notBearer, 401, 'unauthorized');
});

csrf("another user's cookie cannot read or change a function: 404, like no function", async () => {
  const a = await browser();
  const b = await browser();
  const made = await a.send('POST', '/api/functions/deploy', { json: { name: 'mine', ...declaration() }, csrf: a.csrf });
  assert.is(made.status, 201, JSON.stringify(made.body));
  const id = made.body.id as string;
  for (const ref of [id, 'mine']) {
    assertError(await b.send('GET', `/api/functions/${ref}`), 404, 'function_not_found');
    assertError(await b.send('GET', `/api/functions/${ref}/deployments`), 404, 'function_not_found');
    assertError(await b.send('PATCH', `/api/functions/${ref}`, { json: { access: 'public' }, csrf: b.csrf }), 404, 'function_not_found');
    assertError(await b.send('DELETE', `/api/functions/${ref}`, { csrf: b.csrf }), 404, 'function_not_found');
  }
  assert.equal((await b.send('GET', '/api/functions')).body.functions, []);
  const still = await a.send('GET', `/api/functions/${id}`);
  assert.is(still.status, 200);
  assert.is(still.body.access, 'private', "the other user's PATCH changed nothing");
});

csrf('sign-out needs the CSRF header, revokes the token (the old cookie is a 401 everywhere) and clears the cookie', async () => {
  const b = await browser();
  assertError(await b.send('DELETE', '/api/auth/session'), 403, 'csrf_failed');
  assert.is((await b.send('GET', '/api/functions')).status, 200, 'a refused sign-out changed nothing');
  const out = await b.send('DELETE', '/api/auth/session', { csrf: b.csrf });
  assert.is(out.status, 204, JSON.stringify(out.body));
  const cleared = parseSetCookie(out.headers.get('set-cookie'));
  assert.is(cleared.name, 'cp_session');
  assert.is(cleared.value, '');
  assert.ok(cleared.attrs.includes('max-age=0'), cleared.attrs.join('; '));
  // the old cookie's value is useless now: here at once (this process's token cache forgets it)
  assertError(await b.send('GET', '/api/functions'), 401, 'unauthorized');
  assertError(await b.send('GET', '/api/auth/session'), 401, 'unauthorized');
  assertError(await b.send('DELETE', '/api/auth/session', { csrf: b.csrf }), 401, 'unauthorized');
  const tokens = (await b.bearer.get('/api/auth/tokens')).body.tokens;
  assert.equal(tokens.map((t: any) => t.name), ['login'], 'the browser token is gone, the login token stays');
});

// ---------------------------------------------------------------------------------------------
const list = suite("the list's last hour");

list('GET /api/functions counts each function\'s requests and errors of the last hour, in one query for the whole list', async () => {
  const b = await browser();
  const fn = await makeNodeFunction('export default async (event) => { if (event.fail) throw new Error("failing on purpose"); return { ok: true }; };\n');
  const busy = await deployAndBuild(b.bearer, 'busy', fn);
  assert.is(busy.built.status, 'active', busy.built.error ?? '');
  const quiet = await deployAndBuild(b.bearer, 'quiet', fn);
  assert.is(quiet.built.status, 'active', quiet.built.error ?? '');
  for (let i = 0; i < 3; i++) assert.is((await b.send('POST', `/api/functions/${busy.id}/invoke`, { json: {}, csrf: b.csrf })).status, 200);
  assertError(await b.send('POST', `/api/functions/${busy.id}/invoke`, { json: { fail: true }, csrf: b.csrf }), 502, 'function_error');
  // another user's invocations are not in this list
  const other = await browser();
  const theirs = await deployAndBuild(other.bearer, 'busy', fn);
  assert.is((await other.bearer.post(`/api/functions/${theirs.id}/invoke`, {})).status, 200);

  const listed = await waitFor(
    'the invocations to be flushed into the metrics',
    async () => {
      const res = await b.send('GET', '/api/functions');
      assert.is(res.status, 200, JSON.stringify(res.body));
      const got = res.body.functions.find((f: any) => f.name === 'busy');
      return got.lastHour.requests >= 4 ? res.body.functions : undefined;
    },
    { timeoutMs: 10_000 },
  );
  const byName = Object.fromEntries(listed.map((f: any) => [f.name, f.lastHour]));
  assert.equal(byName, { busy: { requests: 4, errors: 1 }, quiet: { requests: 0, errors: 0 } });
  const theirList = await waitFor(
    "the other user's invocation to be flushed",
    async () => {
      const fns = (await other.send('GET', '/api/functions')).body.functions;
      return fns[0].lastHour.requests >= 1 ? fns : undefined;
    },
    { timeoutMs: 10_000 },
  );
  assert.equal(theirList.map((f: any) => [f.id, f.lastHour]), [[theirs.id, { requests: 1, errors: 0 }]]);
  // only on the list
  assert.not.ok('lastHour' in (await b.send('GET', `/api/functions/${busy.id}`)).body);

  // older than an hour: not counted (the row is moved back in time as retention would find it)
  await tp.platform.db.knex('function_metrics').where({ function_id: quiet.id }).delete();
  const [row] = await tp.platform.db.knex('function_metrics').where({ function_id: busy.id }).select('deployment_id', 'source');
  await tp.platform.db.knex('function_metrics').insert({
    function_id: quiet.id, deployment_id: quiet.deploymentId, version: 1, source: row.source,
    minute: new Date(Math.floor((Date.now() - 61 * 60_000) / 60_000) * 60_000).toISOString(),
    requests: 50, errors: 5, timeouts: 0, crashes: 0, duration_sum_ms: 0, latency: '[]',
  });
  assert.equal((await b.send('GET', '/api/functions')).body.functions.find((f: any) => f.name === 'quiet').lastHour, { requests: 0, errors: 0 });

  // one query of function_metrics however long the list is
  const seen: string[] = [];
  const onQuery = (q: { sql: string }) => {
    if (q.sql.includes('function_metrics')) seen.push(q.sql);
  };
  tp.platform.db.knex.on('query', onQuery);
  try {
    assert.is((await b.send('GET', '/api/functions')).body.functions.length, 2);
  } finally {
    tp.platform.db.knex.off('query', onQuery);
  }
  assert.is(seen.length, 1, seen.join('\n'));
  assert.match(seen[0]!, /group by/i);
});

// ---------------------------------------------------------------------------------------------
const files = suite('the page and its files');

/** A request sent exactly as written (fetch would resolve `..` before sending it). */
function rawGet(target: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const { hostname, port } = new URL(tp.url);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: hostname, port, path: target, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

const root = path.resolve(import.meta.dirname, '..');

files('GET / is the page, with its CSP, nosniff, no framing and no referrer elsewhere; its ETag revalidates to a 304', async () => {
  const res = await tp.http.get('/');
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.is(res.body, fs.readFileSync(path.join(root, 'api/ui/index.html'), 'utf8'));
  assert.match(String(res.body), /<title>ContainerPub<\/title>/);
  assert.is(res.headers.get('content-security-policy'), DASHBOARD_CSP);
  assert.match(DASHBOARD_CSP, /default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'/);
  assert.match(DASHBOARD_CSP, /frame-ancestors 'none'; base-uri 'none'; form-action 'self'$/);
  assert.is(res.headers.get('x-content-type-options'), 'nosniff');
  assert.is(res.headers.get('referrer-policy'), 'same-origin');
  assert.is(res.headers.get('x-frame-options'), 'DENY');
  assert.is(res.headers.get('cache-control'), 'no-cache');
  const etag = res.headers.get('etag');
  assert.ok(etag);
  const again = await tp.http.get('/', { headers: { 'if-none-match': etag! } });
  assert.is(again.status, 304);
  assert.is(again.body, null);
  assert.is((await tp.http.get('/', { headers: { 'if-none-match': '"stale"' } })).status, 200);
  const asFile = await tp.http.get('/ui/index.html');
  assert.is(asFile.status, 200);
  assert.is(asFile.headers.get('content-security-policy'), DASHBOARD_CSP);
});

files('the vendor files are the packages\' own, with their types and nosniff', async () => {
  const cases: [string, string, string][] = [
    ['/ui/vendor/htm-preact.js', 'node_modules/htm/preact/standalone.module.js', 'text/javascript; charset=utf-8'],
    ['/ui/vendor/uplot.js', 'node_modules/uplot/dist/uPlot.esm.js', 'text/javascript; charset=utf-8'],
    ['/ui/vendor/uplot.css', 'node_modules/uplot/dist/uPlot.min.css', 'text/css; charset=utf-8'],
  ];
  for (const [url, file, type] of cases) {
    const res = await tp.http.get(url);
    assert.is(res.status, 200, url);
    assert.is(res.headers.get('content-type'), type, url);
    assert.is(res.headers.get('x-content-type-options'), 'nosniff', url);
    assert.is(res.headers.get('cache-control'), 'no-cache', url);
    assert.is(res.body, fs.readFileSync(path.join(root, file), 'utf8'), url);
    assert.is(res.headers.get('content-security-policy'), null, `${url}: a CSP only on pages`);
  }
  assertError(await tp.http.get('/ui/vendor/left-pad.js'), 404, 'not_found');
});

files('traversal, unknown files and types are refused with a JSON 404', async () => {
  const secret = fs.readFileSync(path.join(root, 'package.json'), 'utf8');
  for (const target of ['/ui/../package.json', '/ui/%2e%2e/package.json', '/ui/%2E%2E/%2E%2E/package.json', '/ui/..%2fpackage.json', '/ui/..%5c..%5cpackage.json',
    '/ui/vendor/../../package.json', '/ui/%252e%252e/package.json', '/ui/.hidden.js', '/ui/index.html%00.js']) {
    const res = await rawGet(target);
    assert.is(res.status, 404, `${target}: ${res.status} ${res.body.slice(0, 200)}`);
    assert.not.ok(res.body.includes('"name": "containerpub"') || res.body === secret, `${target} leaked package.json`);
    assert.is(JSON.parse(res.body).error.code, 'not_found', target);
  }
  // a file of a served type outside api/ui/ (the CLI's entry point), reached by encoded slashes
  const cli = fs.readFileSync(path.join(root, 'scripts/cli/bin.js'), 'utf8');
  for (const target of ['/ui/..%2f..%2fscripts%2fcli%2fbin.js', '/ui/..%2F..%2Fscripts/cli/bin.js', '/ui/%2e%2e%2f%2e%2e%2fscripts/cli/bin.js', '/ui/..%5c..%5cscripts%5ccli%5cbin.js']) {
    const res = await rawGet(target);
    assert.is(res.status, 404, `${target}: ${res.status}`);
    assert.not.ok(res.body === cli, `${target} served a file outside api/ui/`);
  }
  assertError(await tp.http.get('/ui/nope.js'), 404, 'not_found');
  assertError(await tp.http.get('/ui/index.txt'), 404, 'not_found');
  assertError(await tp.http.get('/ui/'), 404, 'not_found');
});

files.after(() => tp.close());
session.run();
csrf.run();
list.run();
files.run();
