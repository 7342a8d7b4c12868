// Authentication, tenant isolation on every route, and bad input: always a clear JSON 4xx, never a
// 500, and never a change to what is live.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { declaration, deployPresigned, simulateBuilt } from './support/flows.ts';
import { createApi } from '../api/server.ts';
import { routeDocs } from '../api/openapi-routes.ts';

const t = await startTestPlatform();
if (!t) process.exit(0);
const tp = t as TestPlatform;

function assertError(res: { status: number; body: any }, status: number, code?: string) {
  assert.is(res.status, status, JSON.stringify(res.body));
  assert.type(res.body?.error?.code, 'string');
  assert.type(res.body?.error?.message, 'string');
  if (code) assert.is(res.body.error.code, code);
  assert.not.match(JSON.stringify(res.body), /at .*\.ts:\d+/, 'no stack trace in the response');
}

const auth = suite('auth');

auth('register: 201 with a token; duplicate email 409; bad email or short password 400', async () => {
  const email = `Someone-${Date.now()}@Example.com`;
  const ok = await tp.http.post('/api/auth/register', { email, password: 'long enough' });
  assert.is(ok.status, 201);
  assert.type(ok.body.userId, 'string');
  assert.match(ok.body.token, /^cp_/);
  assertError(await tp.http.post('/api/auth/register', { email: email.toLowerCase(), password: 'another one' }), 409, 'email_taken');
  assertError(await tp.http.post('/api/auth/register', { email: 'not-an-email', password: 'long enough' }), 400);
  assertError(await tp.http.post('/api/auth/register', { email: 'x@example.com', password: 'short' }), 400);
  assertError(await tp.http.post('/api/auth/register', { email: 'x@example.com' }), 400);
});

auth('login: 200 with a new working token; wrong password or unknown email 401', async () => {
  const email = `login-${Date.now()}@example.com`;
  await tp.http.post('/api/auth/register', { email, password: 'the password' });
  const ok = await tp.http.post('/api/auth/login', { email, password: 'the password' });
  assert.is(ok.status, 200);
  assert.is((await tp.http.get('/api/functions', { token: ok.body.token })).status, 200);
  assertError(await tp.http.post('/api/auth/login', { email, password: 'wrong password' }), 401, 'invalid_credentials');
  assertError(await tp.http.post('/api/auth/login', { email: 'nobody@example.com', password: 'x'.repeat(10) }), 401);
});

auth('passwords and tokens are stored hashed', async () => {
  const email = `hash-${Date.now()}@example.com`;
  const res = await tp.http.post('/api/auth/register', { email, password: 'plain text secret' });
  const user = await tp.platform.db.knex('users').where({ email }).first();
  assert.not.match(user.password_hash, /plain text secret/);
  assert.match(user.password_hash, /^scrypt\$/);
  const tokens = await tp.platform.db.knex('api_tokens').where({ user_id: user.id });
  assert.is(tokens.length, 1);
  assert.is.not(tokens[0].token_hash, res.body.token);
  assert.not.ok(JSON.stringify(tokens).includes(res.body.token));
});

auth('every /api/functions route needs a valid bearer token', async () => {
  const id = '00000000-0000-4000-8000-000000000000';
  const routes: [string, string][] = [
    ['GET', '/api/functions'],
    ['POST', '/api/functions/deploy'],
    ['GET', `/api/functions/${id}`],
    ['DELETE', `/api/functions/${id}`],
    ['GET', `/api/functions/${id}/deployments`],
    ['GET', `/api/functions/${id}/deployments/1`],
    ['POST', `/api/functions/${id}/deployments/1/complete`],
    ['POST', `/api/functions/${id}/rollback`],
    ['GET', `/api/functions/${id}/logs`],
  ];
  for (const [method, path] of routes) {
    assertError(await tp.http.request(method, path, { token: null }), 401, 'unauthorized');
    assertError(await tp.http.request(method, path, { token: 'cp_not-a-real-token' }), 401, 'unauthorized');
    assertError(await tp.http.request(method, path, { headers: { authorization: 'Basic abc' } }), 401);
  }
});

const isolation = suite('tenant isolation');

isolation("another user's function is a 404 on every route, exactly like a missing one", async () => {
  const owner = await tp.newUser();
  const other = await tp.newUser();
  const d = await deployPresigned(owner, 'private', Buffer.from('x'));
  await simulateBuilt(tp.platform, d.id, 1);
  const missing = '00000000-0000-4000-8000-000000000000';
  const routes = (id: string): [string, string, unknown?][] => [
    ['GET', `/api/functions/${id}`],
    ['GET', `/api/functions/${id}/deployments`],
    ['GET', `/api/functions/${id}/deployments/1`],
    ['POST', `/api/functions/${id}/deployments/1/complete`],
    ['POST', `/api/functions/${id}/rollback`, { version: 1 }],
    ['GET', `/api/functions/${id}/logs`],
    ['DELETE', `/api/functions/${id}`],
  ];
  for (const [[method, path, json], [, missingPath]] of routes(d.id).map((r, i) => [r, routes(missing)[i]!] as const)) {
    const theirs = await other.request(method, path, { json });
    const none = await other.request(method, missingPath, { json });
    assertError(theirs, 404, 'function_not_found');
    assert.equal(theirs.body, none.body, `${method} ${path} looks exactly like a missing function`);
  }
  assert.equal((await other.get('/api/functions')).body.functions, []);
  // the same name is free for the other user: a separate function
  const mine = await other.post('/api/functions/deploy', { name: 'private', ...declaration() });
  assert.is(mine.body.isNewFunction, true);
  assert.is.not(mine.body.id, d.id);
  // and the owner's function is untouched
  const fn = await owner.get(`/api/functions/${d.id}`);
  assert.is(fn.body.activeVersion, 1);
  assert.is(fn.body.latestVersion, 1);
});

isolation("the route table, walked: every route of a function answers another user's token with 404 and no data", async () => {
  const owner = await tp.newUser();
  const other = await tp.newUser();
  const d = await deployPresigned(owner, 'walked', Buffer.from('x'));
  await simulateBuilt(tp.platform, d.id, 1);
  const missing = '00000000-0000-4000-8000-000000000000';
  // the app as the platform builds it: a route added later is walked here without a line changed
  const app = createApi(tp.platform, { driver: tp.driver, invoker: tp.invoker });
  const routes = app.routes.filter((r) => r.method !== 'ALL' && r.path.startsWith('/api/functions/:id'));
  const walked = new Set(routes.map((r) => `${r.method} ${r.path}`));
  assert.ok(walked.size >= 10, `only ${walked.size} routes found: ${[...walked].join(', ')}`);
  const fill = (path: string, id: string) => path.replace(':id', id).replace(/:version\b/g, '1').replace(/:[a-zA-Z]+/g, 'x');
  for (const key of walked) {
    const [method, path] = key.split(' ') as [string, string];
    const json = method === 'GET' || method === 'HEAD' ? undefined : {};
    const theirs = await other.request(method, fill(path, d.id), { json });
    const none = await other.request(method, fill(path, missing), { json });
    assertError(theirs, 404, 'function_not_found');
    assert.equal(theirs.body, none.body, `${key} answers another user's function exactly like a missing one`);
    assert.not.ok(JSON.stringify(theirs.body).includes(d.id), `${key} leaks nothing about it`);
  }
  assert.is((await owner.get(`/api/functions/${d.id}`)).body.activeVersion, 1, 'nothing changed for the owner');
});

const input = suite('bad input');

input('malformed JSON, wrong types, bad names, bad UUIDs, non-numeric versions: clear 400s', async () => {
  const api = await tp.newUser();
  const d = await deployPresigned(api, 'target', Buffer.from('x'));
  await simulateBuilt(tp.platform, d.id, 1);
  const raw = (method: string, path: string, body: string, type = 'application/json') =>
    api.request(method, path, { body, headers: { 'content-type': type } });

  assertError(await raw('POST', '/api/functions/deploy', '{"name": '), 400, 'invalid_json');
  assertError(await raw('POST', '/api/functions/deploy', ''), 400);
  assertError(await raw('POST', '/api/functions/deploy', '[1,2]'), 400);
  assertError(await raw('POST', '/api/functions/deploy', 'null'), 400);
  assertError(await raw('POST', '/api/auth/register', '{"email": 5'), 400, 'invalid_json');
  for (const name of ['', 'UPPER', '-leading', 'has_underscore', 'a'.repeat(64), 'spa ce', 'dot.ted', 'ünï', 5, null, ['x']]) {
    assertError(await api.post('/api/functions/deploy', { name, ...declaration() }), 400, 'validation_failed');
  }
  assert.is((await api.post('/api/functions/deploy', { name: 'a'.repeat(63), ...declaration() })).status, 201);
  assert.is((await api.post('/api/functions/deploy', { name: '9lives', ...declaration() })).status, 201);
  assertError(await api.post('/api/functions/deploy', { name: 'ok', ...declaration(), sizeBytes: 'big' }), 400);
  const sizeMessage = async (sizeBytes: unknown) => {
    const res = await api.post('/api/functions/deploy', { name: 'ok', ...declaration(), sizeBytes });
    assertError(res, 400, 'validation_failed');
    return res.body.error.details.fields.find((f: any) => f.field === 'sizeBytes')?.message;
  };
  assert.is(await sizeMessage('big'), 'must be a number');
  assert.is(await sizeMessage(-1), 'must be greater than 0', 'a negative size is a number, refused for its sign');
  assert.is(await sizeMessage(1.5), 'must be a whole number of bytes');
  assertError(await api.post('/api/functions/deploy', { name: 'ok', ...declaration(), sha256: 'abc' }), 400);
  assertError(await raw('POST', '/api/functions/deploy', 'name=x', 'text/plain'), 415);

  // neither an id nor a name: 400; shaped like a name, but no function of the caller's: 404
  for (const bad of ["1' OR '1'='1", 'Not-A-Name', '00000000-0000-4000-8000-00000000000G', '-x']) {
    assertError(await api.get(`/api/functions/${encodeURIComponent(bad)}`), 400, 'bad_request');
    assertError(await api.get(`/api/functions/${encodeURIComponent(bad)}/deployments`), 400);
  }
  for (const name of ['not-a-uuid', '123', '00000000-0000-4000-8000-00000000000g']) {
    assertError(await api.get(`/api/functions/${encodeURIComponent(name)}`), 404, 'function_not_found');
    assertError(await api.get(`/api/functions/${encodeURIComponent(name)}/deployments`), 404, 'function_not_found');
  }
  for (const v of ['abc', '0', '-1', '1.5', '99999999999999']) {
    assertError(await api.get(`/api/functions/${d.id}/deployments/${v}`), 400, 'bad_request');
    assertError(await api.post(`/api/functions/${d.id}/deployments/${v}/complete`), 400);
  }
  for (const body of [{}, { version: '1' }, { version: 1.5 }, { version: 0 }, { version: -2 }, { version: null }]) {
    assertError(await api.post(`/api/functions/${d.id}/rollback`, body), 400, 'validation_failed');
  }
  assertError(await raw('POST', `/api/functions/${d.id}/rollback`, '{"version": 1'), 400, 'invalid_json');
  assertError(await api.get(`/api/functions/${d.id}/deployments?limit=abc`), 400);
  assertError(await api.get(`/api/functions/${d.id}/deployments?limit=0`), 400);
  assertError(await api.get(`/api/functions/${d.id}/deployments?before=x`), 400);
  assertError(await api.get(`/api/functions/${d.id}/logs?limit=-1`), 400);
  assertError(await api.get('/api/nope'), 404, 'not_found');
  assertError(await raw('POST', '/api/functions/deploy', JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) })), 413);

  // none of it changed what is live
  const fn = await api.get(`/api/functions/${d.id}`);
  assert.is(fn.body.activeVersion, 1);
});

input('every documented route, given hostile ids, versions, queries and bodies: a JSON error or a success, never a 500 or a stack', async () => {
  const api = await tp.newUser();
  const d = await deployPresigned(api, 'fuzzed', Buffer.from('x'));
  await simulateBuilt(tp.platform, d.id, 1);
  // what a route's parameters are given: the caller's function (by id and by name), and what no route should choke on
  const ids = [d.id, 'fuzzed', '00000000-0000-4000-8000-000000000000', `${'a'.repeat(300)}%E2%82%AC%00`];
  const versions = ['1', '99999999999999999999', 'abc'];
  const queries = ['', '?limit=1e9&before=-1&since=99999999999999999999-1&tag=%00&version=abc&window=zz&from=x&to=1e99&limit=abc'];
  const hostile = { version: '1', name: { $gt: '' }, config: 'x', metadata: [1], percent: '50', to: -1, tag: {}, expiresInDays: 1e9, scopes: 'x', steps: [1e9], intervalSeconds: -1, email: [], password: 1 };
  const bodies = [undefined, '{', '[]', '{"version":1e400}', '{"__proto__":{"admin":true}}', JSON.stringify(hostile)];
  // the routes that end the caller's session or delete its function go last
  const last = (r: { method: string; path: string }) => (r.method === 'delete' && r.path === '/api/functions/:id') || /logout|auth\/session|auth\/tokens\/:id/.test(r.path);
  const routes = [...routeDocs.filter((r) => !r.outsideHono && !last(r)), ...routeDocs.filter((r) => !r.outsideHono && last(r))];
  const wrong: string[] = [];
  let sent = 0;
  for (const r of routes) {
    const paths = new Set<string>();
    for (const id of ids) {
      for (const v of /:version|:a\b/.test(r.path) ? versions : ['1']) {
        paths.add(r.path.replace(':version', v).replace(':a', v).replace(':b', '1').replace(':tag', v === '1' ? 'beta' : v).replace(/:\w+|\*/g, id));
      }
    }
    const method = r.method.toUpperCase();
    for (const path of paths) {
      for (const query of queries) {
        for (const body of method === 'GET' || method === 'HEAD' ? [undefined] : bodies) {
          const headers: Record<string, string> = { authorization: `Bearer ${api.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) };
          const res = await fetch(tp.url + path + query, { method, headers, body });
          sent++;
          // an event stream that opened is not read: its status said what this test asks
          const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? (await res.body?.cancel(), '') : await res.text();
          const what = `${res.status} ${method} ${path}${query}${body === undefined ? '' : ` ${body}`}: ${text.slice(0, 160)}`;
          if (res.status < 400) continue;
          let code: unknown;
          try {
            code = JSON.parse(text).error?.code;
          } catch {
            /* not JSON */
          }
          // a 503 of the platform's own (a version this process cannot serve) is an answer; a 500 is a bug
          if (typeof code !== 'string' || code === 'internal' || res.status === 500 || /\bat .*\.[mc]?[jt]s:\d+/.test(text)) wrong.push(what);
        }
      }
    }
  }
  assert.ok(sent > 800, `only ${sent} requests sent`);
  assert.equal(wrong.slice(0, 20), [], `${wrong.length} answers out of ${sent} were a 500, a stack, or an error that is not JSON`);
});

input('readiness: 200 when the database and S3 answer', async () => {
  assert.is((await tp.http.get('/healthz')).status, 200);
  const ready = await tp.http.get('/readyz');
  assert.is(ready.status, 200);
  assert.is(ready.body.database, 'ok');
  assert.is(ready.body.storage, 'ok');
});

input.after(() => tp.close());
auth.run();
isolation.run();
input.run();
