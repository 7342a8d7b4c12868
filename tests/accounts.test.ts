// Accounts and tokens: tokens that expire, carry a name and lastUsedAt, can be listed, made for CI
// and revoked (also by logout), and stop working within the token cache's 5 s everywhere; sign-up
// and login rate-limited per client address and per email without telling which emails exist;
// closed registration, with `npm run users -- add` (a real process) making the accounts instead.
import { spawn } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { TOKEN_CACHE_MS, TokenCache } from '../shared/domain/tokens.ts';
import { nodeArgsFor } from './support/bundle.ts';
import { client } from './support/http.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { ignoreClosedStdin, runnerEnv } from './support/processes.ts';
import { waitFor } from './support/services.ts';

const DAY_MS = 86_400_000;

const started = await startTestPlatform();
if (!started) process.exit(0);
const tp = started as TestPlatform;

function assertError(res: { status: number; body: any }, status: number, code: string) {
  assert.is(res.status, status, JSON.stringify(res.body));
  assert.is(res.body?.error?.code, code, JSON.stringify(res.body));
  assert.type(res.body?.error?.message, 'string');
}

const near = (iso: string, expectedMs: number, slackMs = 60_000) =>
  assert.ok(Math.abs(Date.parse(iso) - expectedMs) < slackMs, `${iso} is not near ${new Date(expectedMs).toISOString()}`);

/** Resolves at wall-clock time `ms` (waiting for a moment in time, not for a state). */
const until = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - Date.now())));

// ---------------------------------------------------------------------------------------------
const tokens = suite('tokens');

tokens('login tokens last TOKEN_TTL_DAYS (30 by default); the list never shows a secret or its hash', async () => {
  const api = await tp.newUser();
  const list = await api.get('/api/auth/tokens');
  assert.is(list.status, 200);
  assert.is(list.body.tokens.length, 1);
  const [t] = list.body.tokens;
  assert.equal(Object.keys(t).sort(), ['createdAt', 'current', 'expiresAt', 'id', 'lastUsedAt', 'name']);
  assert.is(t.name, 'login');
  assert.is(t.current, true);
  near(t.expiresAt, Date.now() + 30 * DAY_MS);
  const row = await tp.platform.db.knex('api_tokens').where({ id: t.id }).first();
  const text = JSON.stringify(list.body);
  assert.not.ok(text.includes(api.token), 'no secret');
  assert.not.ok(text.includes(row.token_hash), 'no hash');

  const me = await api.get('/api/auth/me');
  assert.is(me.status, 200);
  assert.equal(me.body, { userId: api.userId, email: me.body.email, handle: me.body.handle });
  assert.match(me.body.handle, /^[a-z0-9-]+$/);
  assert.match(me.body.email, /@example\.com$/);
});

tokens('POST /api/auth/tokens makes a named token, shown once, that works; bad bodies are 400s', async () => {
  const api = await tp.newUser();
  const made = await api.post('/api/auth/tokens', { name: 'ci deploys', expiresInDays: 7 });
  assert.is(made.status, 201, JSON.stringify(made.body));
  assert.match(made.body.token, /^cp_/);
  assert.is(made.body.name, 'ci deploys');
  near(made.body.expiresAt, Date.now() + 7 * DAY_MS);
  const ci = api.withToken(made.body.token);
  assert.is((await ci.get('/api/functions')).status, 200);
  const list = (await ci.get('/api/auth/tokens')).body.tokens;
  assert.equal(list.map((t: any) => [t.name, t.current]).sort(), [['ci deploys', true], ['login', false]]);
  assert.not.ok(JSON.stringify(list).includes(made.body.token));
  // without expiresInDays: TOKEN_TTL_DAYS
  near((await api.post('/api/auth/tokens', { name: 'default' })).body.expiresAt, Date.now() + 30 * DAY_MS);

  for (const body of [{}, { name: '' }, { name: '   ' }, { name: 'x'.repeat(101) }, { name: 5 }, { name: 'x', expiresInDays: 0 },
    { name: 'x', expiresInDays: 1.5 }, { name: 'x', expiresInDays: 'soon' }, { name: 'x', expiresInDays: 3651 }]) {
    assertError(await api.post('/api/auth/tokens', body), 400, 'validation_failed');
  }
});

tokens('every token route needs a valid bearer token', async () => {
  const id = '00000000-0000-4000-8000-000000000000';
  for (const [method, path] of [['GET', '/api/auth/tokens'], ['POST', '/api/auth/tokens'], ['DELETE', `/api/auth/tokens/${id}`],
    ['POST', '/api/auth/logout'], ['GET', '/api/auth/me']] as const) {
    const json = method === 'POST' ? { name: 'x' } : undefined;
    assertError(await tp.http.request(method, path, { token: null, json }), 401, 'unauthorized');
    assertError(await tp.http.request(method, path, { token: 'cp_not-a-real-token', json }), 401, 'unauthorized');
  }
});

tokens("DELETE revokes a token: at once here, within the cache's 5 s on another API process; another user's is a 404", async () => {
  const api = await tp.newUser();
  const other = await tp.newUser();
  const made = await api.post('/api/auth/tokens', { name: 'to revoke' });
  const doomed = api.withToken(made.body.token);
  const replica = await tp.replica();
  try {
    const onReplica = client(replica.url, made.body.token);
    assert.is((await onReplica.get('/api/functions')).status, 200); // cached there now
    assert.is((await doomed.get('/api/functions')).status, 200);

    assertError(await other.del(`/api/auth/tokens/${made.body.id}`), 404, 'not_found');
    assert.is((await doomed.get('/api/functions')).status, 200, "another user's DELETE changed nothing");
    assertError(await api.del('/api/auth/tokens/not-a-uuid'), 400, 'bad_request');

    const revokedAt = Date.now();
    const res = await api.del(`/api/auth/tokens/${made.body.id}`);
    assert.is(res.status, 204);
    assertError(await doomed.get('/api/functions'), 401, 'unauthorized');
    await waitFor('the replica to refuse the revoked token', async () => (await onReplica.get('/api/functions')).status === 401, {
      timeoutMs: TOKEN_CACHE_MS + 2_000,
    });
    assert.ok(Date.now() - revokedAt <= TOKEN_CACHE_MS + 1_000, `took ${Date.now() - revokedAt} ms`);
    assertError(await api.del(`/api/auth/tokens/${made.body.id}`), 404, 'not_found');
    assert.is((await api.get('/api/functions')).status, 200, 'the other token is untouched');
  } finally {
    await replica.close();
  }
});

tokens('POST /api/auth/logout revokes the token it was sent with, and only that one', async () => {
  const api = await tp.newUser();
  const second = api.withToken((await api.post('/api/auth/tokens', { name: 'second' })).body.token);
  assert.is((await second.post('/api/auth/logout')).status, 204);
  assertError(await second.get('/api/functions'), 401, 'unauthorized');
  const left = (await api.get('/api/auth/tokens')).body.tokens;
  assert.equal(left.map((t: any) => t.name), ['login']);
});

tokens('an expiring token stops at its expiry, not up to 5 s later from the cache; no expiry at all is refused', async () => {
  const api = await tp.newUser();
  const made = await api.post('/api/auth/tokens', { name: 'short' });
  const expiresAt = Date.now() + 1_500;
  await tp.platform.db.knex('api_tokens').where({ id: made.body.id }).update({ expires_at: new Date(expiresAt).toISOString() });
  const short = api.withToken(made.body.token);
  assert.is((await short.get('/api/functions')).status, 200); // cached, but only until the expiry
  await until(expiresAt + 50);
  assertError(await short.get('/api/functions'), 401, 'unauthorized');
  assert.ok(Date.now() < expiresAt + TOKEN_CACHE_MS, 'refused before a 5 s cache entry would have ended');
  assert.equal((await api.get('/api/auth/tokens')).body.tokens.map((t: any) => t.name), ['login'], 'expired tokens are not listed');

  const other = await api.post('/api/auth/tokens', { name: 'no expiry' });
  await tp.platform.db.knex('api_tokens').where({ id: other.body.id }).update({ expires_at: null });
  assertError(await api.withToken(other.body.token).get('/api/functions'), 401, 'unauthorized');
});

tokens('lastUsedAt: null until used, set off the request path, then written at most once a minute', async () => {
  const api = await tp.newUser();
  const made = await api.post('/api/auth/tokens', { name: 'usage' });
  const lastUsed = async () => (await api.get('/api/auth/tokens')).body.tokens.find((t: any) => t.id === made.body.id).lastUsedAt;
  assert.is(await lastUsed(), null);
  assert.is((await api.withToken(made.body.token).get('/api/functions')).status, 200);
  const first: string = await waitFor('lastUsedAt to be recorded', async () => (await lastUsed()) ?? undefined, { timeoutMs: 5_000 });
  near(first, Date.now(), 10_000);

  // A cache that asks the database on every lookup still writes last_used_at once a minute only.
  const cache = new TokenCache(tp.platform.db, { cacheMs: 0 });
  for (let i = 0; i < 5; i++) assert.equal(await cache.authenticate(made.body.token), { userId: api.userId, tokenId: made.body.id });
  await cache.settled();
  assert.is(await lastUsed(), first, 'no write within the minute');
  const twoMinutesAgo = new Date(Date.now() - 120_000).toISOString();
  await tp.platform.db.knex('api_tokens').where({ id: made.body.id }).update({ last_used_at: twoMinutesAgo });
  await cache.authenticate(made.body.token);
  await cache.settled();
  const refreshed = await lastUsed();
  assert.ok(refreshed > twoMinutesAgo, `refreshed after a minute: ${refreshed}`);
});

// ---------------------------------------------------------------------------------------------
// A platform with sign-up closed and small limits. TRUST_PROXY=on lets one test client speak from
// many addresses (X-Forwarded-For), so the per-email and per-address limits can be told apart.
const closedStarted = await startTestPlatform({
  REGISTRATION: 'closed',
  AUTH_RATE_LIMIT_PER_MINUTE: '3',
  AUTH_RATE_LIMIT_PER_EMAIL_PER_MINUTE: '2',
  TRUST_PROXY: 'on',
  TOKEN_TTL_DAYS: '2',
});
const cp = closedStarted as TestPlatform;
let addressCounter = 0;
const newAddress = () => `203.0.113.${++addressCounter}`;
const loginFrom = (address: string, email: string, password: string) =>
  cp.http.post('/api/auth/login', { email, password }, { headers: { 'x-forwarded-for': `198.51.100.7, ${address}` } });

/** `npm run users -- add …` as its own process over the closed platform's database. */
function usersAdd(args: string[], stdin?: string) {
  const child = spawn(process.execPath, [...nodeArgsFor('scripts/users.ts'), 'add', ...args], {
    env: runnerEnv(cp, { LOG_LEVEL: 'warn' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  ignoreClosedStdin(child);
  child.stdin!.end(stdin ?? '');
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
}

const signup = suite('sign-up: REGISTRATION=closed and npm run users');

signup('closed: POST /api/auth/register is a 403 registration_closed, and makes no account', async () => {
  const email = `closed-${Date.now()}@example.com`;
  const res = await cp.http.post('/api/auth/register', { email, password: 'long enough' }, { headers: { 'x-forwarded-for': newAddress() } });
  assertError(res, 403, 'registration_closed');
  assert.match(res.body.error.message, /closed/);
  assert.is(await cp.platform.db.knex('users').where({ email }).first(), undefined);
});

signup('users add --password-stdin: the account logs in with that password, with a TOKEN_TTL_DAYS token', async () => {
  const email = `Added-${Date.now()}@Example.com`;
  const r = await usersAdd([email, '--password-stdin'], 'from stdin 123\n');
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`created ${email.toLowerCase()}`));
  assert.not.match(r.stdout, /password/);
  const ok = await loginFrom(newAddress(), email, 'from stdin 123');
  assert.is(ok.status, 200, JSON.stringify(ok.body));
  const list = (await cp.http.get('/api/auth/tokens', { token: ok.body.token })).body.tokens;
  near(list[0].expiresAt, Date.now() + 2 * DAY_MS);
});

signup('users add without a password: one is generated and printed once, and it works', async () => {
  const email = `generated-${Date.now()}@example.com`;
  const r = await usersAdd([email]);
  assert.is(r.code, 0, r.stderr);
  const password = /^password: (\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(password && password.length >= 16, r.stdout);
  const user = await cp.platform.db.knex('users').where({ email }).first();
  assert.not.ok(user.password_hash.includes(password));
  assert.is((await loginFrom(newAddress(), email, password)).status, 200);
});

signup('users add refuses a taken email, a bad email, a short password and bad usage, in one line', async () => {
  const email = `twice-${Date.now()}@example.com`;
  assert.is((await usersAdd([email])).code, 0);
  const again = await usersAdd([email]);
  assert.is(again.code, 1);
  assert.match(again.stderr, /already exists/);
  const bad = await usersAdd(['not-an-email']);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /email: must be an email address/);
  const short = await usersAdd([`short-${Date.now()}@example.com`, '--password-stdin'], 'short\n');
  assert.is(short.code, 2);
  assert.match(short.stderr, /at least 8 characters/);
  assert.is((await usersAdd([])).code, 2);
});

const limits = suite('sign-up and login rate limits');

limits('a failed login looks the same for an unknown email and a wrong password, also once limited', async () => {
  const known = `known-${Date.now()}@example.com`;
  assert.is((await usersAdd([known, '--password-stdin'], 'right password\n')).code, 0);
  const unknown = `unknown-${Date.now()}@example.com`;
  const seen: Record<string, unknown[]> = { known: [], unknown: [] };
  for (const [label, email] of [['known', known], ['unknown', unknown]] as const) {
    for (let i = 0; i < 3; i++) {
      const res = await loginFrom(newAddress(), email, 'wrong password');
      seen[label]!.push([res.status, res.body, res.headers.get('retry-after') !== null]);
    }
  }
  assert.equal(seen.known, seen.unknown);
  const [first, , third] = seen.known as [number, any, boolean][];
  assert.equal(first, [401, { error: { code: 'invalid_credentials', message: 'wrong email or password' } }, false]);
  assert.is(third![0], 429);
  assert.is(third![1].error.code, 'rate_limited');
});

limits('per email: the third attempt within a minute is a 429 with Retry-After, from any address', async () => {
  const email = `target-${Date.now()}@example.com`;
  assert.is((await usersAdd([email, '--password-stdin'], 'right password\n')).code, 0);
  assertError(await loginFrom(newAddress(), email, 'guess one'), 401, 'invalid_credentials');
  assertError(await loginFrom(newAddress(), email.toUpperCase(), 'guess two'), 401, 'invalid_credentials');
  const limited = await loginFrom(newAddress(), email, 'right password');
  assertError(limited, 429, 'rate_limited');
  const retry = Number(limited.headers.get('retry-after'));
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  assert.match(limited.body.error.message, new RegExp(`try again in ${retry} s`));
});

limits('per address: the fourth attempt within a minute is a 429, whatever the emails', async () => {
  const address = newAddress();
  for (let i = 0; i < 3; i++) assertError(await loginFrom(address, `a${i}-${Date.now()}@example.com`, 'whatever'), 401, 'invalid_credentials');
  const limited = await loginFrom(address, `fresh-${Date.now()}@example.com`, 'whatever');
  assertError(limited, 429, 'rate_limited');
  assert.ok(Number(limited.headers.get('retry-after')) >= 1);
  // register shares the limit: refused for being closed first, which costs no attempt
  assertError(await cp.http.post('/api/auth/register', { email: `r-${Date.now()}@example.com`, password: 'long enough' }, { headers: { 'x-forwarded-for': address } }), 403, 'registration_closed');
  // another address is not affected
  assertError(await loginFrom(newAddress(), `fresh-${Date.now()}@example.com`, 'whatever'), 401, 'invalid_credentials');
});

limits('without TRUST_PROXY, X-Forwarded-For is ignored: the socket address is what is limited', async () => {
  const plain = (await startTestPlatform({ AUTH_RATE_LIMIT_PER_MINUTE: '2' })) as TestPlatform;
  try {
    const attempt = (i: number) =>
      plain.http.post('/api/auth/register', { email: `xff${i}-${Date.now()}@example.com`, password: 'long enough' }, { headers: { 'x-forwarded-for': `192.0.2.${i}` } });
    assert.is((await attempt(1)).status, 201);
    assert.is((await attempt(2)).status, 201);
    assertError(await attempt(3), 429, 'rate_limited');
  } finally {
    await plain.close();
  }
});

limits.after(async () => {
  await cp.close();
  await tp.close();
});

tokens.run();
signup.run();
limits.run();
