// Function endpoints over real HTTP (fetch/undici, node:http and curl), on SQLite and PostgreSQL:
// handles and URLs, HTTP and event handlers, fidelity (headers, binary bodies, cookies, streams),
// access modes and keys, version pinning, the body limit, platform errors, host-based routing.
import http from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild, waitForInvocation } from './support/flows.ts';
import { client, type Client } from './support/http.ts';
import { waitFor } from './support/services.ts';

const t = await startTestPlatform(
  {
    FUNCTION_TIMEOUT_MS: '1500',
    FUNCTION_IDLE_MS: '60000',
    MAX_REQUEST_BYTES: String(256 * 1024),
    FUNCTIONS_DOMAIN: 'fn.localtest',
  },
  { runner: true },
);
if (!t) process.exit(0);
const tp = t as TestPlatform;

/** Echoes everything it was given; streams, cookies, crashes and hangs on demand (by path). */
const ECHO = `
let calls = 0;
export default {
  async fetch(request, context) {
    calls++;
    const url = new URL(request.url);
    if (url.pathname === '/cookies') {
      const headers = new Headers({ 'content-type': 'text/plain' });
      headers.append('set-cookie', 'a=1; Path=/');
      headers.append('set-cookie', 'b=2; Path=/; HttpOnly');
      return new Response('two cookies', { headers });
    }
    if (url.pathname === '/stream') {
      const enc = new TextEncoder();
      let finishedAt = 0;
      const stream = new ReadableStream({
        async start(controller) {
          for (let i = 0; i < 3; i++) {
            controller.enqueue(enc.encode('data: ' + JSON.stringify({ i, at: Date.now() }) + '\\n\\n'));
            await new Promise((r) => setTimeout(r, 300));
          }
          controller.enqueue(enc.encode('data: ' + JSON.stringify({ done: true, at: Date.now() }) + '\\n\\n'));
          controller.close();
        },
      });
      return new Response(stream, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
    }
    if (url.pathname === '/broken-stream') {
      const stream = new ReadableStream({
        async pull(controller) {
          controller.enqueue(new TextEncoder().encode('partial'));
          await new Promise((r) => setTimeout(r, 50));
          controller.error(new Error('stream broke on purpose'));
        },
      });
      return new Response(stream);
    }
    if (url.pathname === '/crash') { console.error('crashing on purpose'); process.exit(7); }
    if (url.pathname === '/hang') return new Promise(() => {});
    if (url.pathname === '/throw') { console.log('about to throw'); throw new Error('thrown on purpose'); }
    if (url.pathname === '/not-a-response') return { hello: 'world' };
    if (url.pathname === '/status') return new Response(null, { status: 204, headers: { 'x-custom': 'yes' } });
    if (url.pathname === '/calls') return Response.json({ calls, instanceId: context.instanceId });
    console.log('echo', request.method, url.pathname);
    const body = Buffer.from(await request.arrayBuffer());
    const headers = {};
    for (const [k, v] of request.headers) headers[k] = v;
    return Response.json({
      method: request.method,
      url: request.url,
      path: url.pathname,
      query: url.search,
      headers,
      bodyBase64: body.toString('base64'),
      version: context.version,
      requestId: context.requestId,
    }, { status: url.searchParams.get('status') ? Number(url.searchParams.get('status')) : 200 });
  },
};`;

const EVENT = `export default async (event, context) => {
  console.log('event handler ran');
  return { got: event, version: context.version };
};`;

const echo = suite('HTTP handlers');

let alice: Client & { userId: string; token: string };
let aliceHandle = '';
let echoFn: { id: string; version: number };

async function user(handle?: string) {
  const email = `u${Math.random().toString(36).slice(2)}@example.com`;
  const res = await tp.http.post('/api/auth/register', { email, password: 'correct horse battery', ...(handle ? { handle } : {}) });
  assert.is(res.status, 201, JSON.stringify(res.body));
  return Object.assign(client(tp.url, res.body.token), { userId: res.body.userId, token: res.body.token, handle: res.body.handle as string });
}

echo.before(async () => {
  const handle = `alice-${Math.random().toString(36).slice(2, 8)}`;
  alice = await user(handle);
  aliceHandle = handle;
  echoFn = await deployAndBuild(alice, 'echo', await makeNodeFunction(ECHO));
  const patched = await alice.request('PATCH', `/api/functions/${echoFn.id}`, { json: { access: 'public' } });
  assert.is(patched.status, 200, JSON.stringify(patched.body));
});

/** Response bodies as the tests read them. */
const json = async (r: Response): Promise<any> => r.json();

const fnUrl = (handle: string, name: string, rest = '') => `${tp.url}/fn/${handle}/${name}${rest}`;

echo('an echo handler gets method, path, query, headers and a binary body exactly; X-Forwarded-* added, hop-by-hop removed', async () => {
  const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const res = await fetch(fnUrl(aliceHandle, 'echo', '/a/b%20c?x=1&y=%C3%A9&x=2'), {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'x-custom': 'yes', 'x-forwarded-for': '6.6.6.6', 'x-containerpub-request-id': 'spoofed' },
    body: binary,
  });
  assert.is(res.status, 200);
  const body: any = await json(res);
  assert.is(body.method, 'PUT');
  assert.is(body.path, '/a/b%20c');
  assert.is(body.query, '?x=1&y=%C3%A9&x=2');
  assert.is(Buffer.from(body.bodyBase64, 'base64').equals(binary), true);
  assert.is(body.headers['content-type'], 'application/octet-stream');
  assert.is(body.headers['x-custom'], 'yes');
  assert.is(body.headers['x-forwarded-for'], '127.0.0.1', 'an untrusted X-Forwarded-For is replaced by the peer');
  assert.is(body.headers['x-forwarded-proto'], 'http');
  assert.is(body.headers['x-forwarded-prefix'], `/fn/${aliceHandle}/echo`);
  assert.ok(body.headers['x-forwarded-host'].startsWith('127.0.0.1:'));
  assert.is(body.headers['connection'], undefined);
  assert.is(body.headers['x-containerpub-request-id'], undefined);
  assert.is(body.url, `http://${body.headers['x-forwarded-host']}/a/b%20c?x=1&y=%C3%A9&x=2`);
  assert.is(res.headers.get('x-function-version'), '1');
  assert.is(res.headers.get('x-request-id'), body.requestId);
  assert.is(res.headers.get('x-containerpub-error'), null);
  assert.is(res.headers.get('content-length'), String(Buffer.byteLength(JSON.stringify(body))));
});

echo('binary responses, statuses and the bare function path come through', async () => {
  const res = await fetch(fnUrl(aliceHandle, 'echo'), { method: 'POST', body: 'x' });
  assert.is((await json(res)).path, '/');
  const created = await fetch(fnUrl(aliceHandle, 'echo', '/anything?status=201'));
  assert.is(created.status, 201);
  const none = await fetch(fnUrl(aliceHandle, 'echo', '/status'));
  assert.is(none.status, 204);
  assert.is(none.headers.get('x-custom'), 'yes');
  assert.is(await none.text(), '');
  const head = await fetch(fnUrl(aliceHandle, 'echo', '/x'), { method: 'HEAD' });
  assert.is(head.status, 200);
  assert.is(head.headers.get('content-type'), 'application/json');
});

echo('two Set-Cookie headers arrive as two', async () => {
  const res = await fetch(fnUrl(aliceHandle, 'echo', '/cookies'));
  assert.is(res.status, 200);
  assert.equal(res.headers.getSetCookie(), ['a=1; Path=/', 'b=2; Path=/; HttpOnly']);
  assert.is(await res.text(), 'two cookies');
});

echo("a stream's first chunk arrives before the handler has finished producing it (server-sent events)", async () => {
  const res = await fetch(fnUrl(aliceHandle, 'echo', '/stream'));
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-type'), 'text/event-stream');
  const reader = res.body!.getReader();
  const first = await reader.read();
  const firstAt = Date.now();
  const text = new TextDecoder().decode(first.value);
  assert.match(text, /^data: \{"i":0/);
  let rest = '';
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    rest += new TextDecoder().decode(r.value);
  }
  const done = JSON.parse(/data: (\{"done".*\})/.exec(rest)![1]!);
  // the last event was produced ≥ 600 ms after the first one was already here
  assert.ok(done.at - firstAt >= 500, `first chunk at ${firstAt}, last produced at ${done.at}`);
});

echo('curl -N prints the first event of a stream while the stream is still open', async () => {
  const started = Date.now();
  const child = execFile('curl', ['-sN', fnUrl(aliceHandle, 'echo', '/stream')]);
  let out = '';
  const firstEventAt = await new Promise<number>((resolve) => {
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('data: {"i":0')) resolve(Date.now());
    });
  });
  const exitAt = await new Promise<number>((resolve) => child.on('exit', () => resolve(Date.now())));
  assert.match(out, /"done":true/);
  assert.ok(exitAt - firstEventAt >= 500, `first event after ${firstEventAt - started} ms, curl ended ${exitAt - firstEventAt} ms later`);
});

echo('a stream that fails half-way cuts the connection (never a short body that looks whole) and is recorded as an error', async () => {
  let failed = false;
  try {
    const res = await fetch(fnUrl(aliceHandle, 'echo', '/broken-stream'));
    await res.text();
  } catch {
    failed = true;
  }
  assert.ok(failed, 'reading the body must fail');
  const list = await waitFor('the record of the broken stream', async () => {
    const r = await alice.get(`/api/functions/${echoFn.id}/invocations?limit=50`);
    return (r.body.invocations as any[]).find((i) => i.path === '/broken-stream');
  });
  assert.is(list.outcome, 'error');
  // the instance is still the same healthy one
  const calls = await json(await fetch(fnUrl(aliceHandle, 'echo', '/calls')));
  assert.ok(calls.calls > 1);
});

echo('a request body over MAX_REQUEST_BYTES gets 413, declared or streamed', async () => {
  const big = Buffer.alloc(256 * 1024 + 1, 0x61);
  const declared = await fetch(fnUrl(aliceHandle, 'echo'), { method: 'POST', body: big });
  assert.is(declared.status, 413);
  assert.is(declared.headers.get('x-containerpub-error'), 'payload_too_large');
  assert.is((await json(declared)).error.code, 'payload_too_large');
  const streamed = await fetch(fnUrl(aliceHandle, 'echo'), { method: 'POST', body: new Blob([big]).stream(), duplex: 'half' } as RequestInit);
  assert.is(streamed.status, 413);
  const fits = await fetch(fnUrl(aliceHandle, 'echo'), { method: 'POST', body: Buffer.alloc(256 * 1024, 0x61) });
  assert.is(fits.status, 200);
});

echo('platform errors carry X-ContainerPub-Error: a throw (502), a crash (502), a timeout (504), a non-Response (502)', async () => {
  const thrown = await fetch(fnUrl(aliceHandle, 'echo', '/throw'));
  assert.is(thrown.status, 502);
  assert.is(thrown.headers.get('x-containerpub-error'), 'function_error');
  assert.is(thrown.headers.get('x-function-version'), '1');
  assert.ok(thrown.headers.get('x-request-id'));
  const body = await json(thrown);
  assert.is(body.error.code, 'function_error');
  assert.match(body.error.message, /thrown on purpose/);
  const record = await waitForInvocation(alice, echoFn.id, thrown.headers.get('x-request-id')!);
  assert.is(record.outcome, 'error');
  assert.is(record.status, 502);
  assert.is(record.method, 'GET');
  assert.is(record.path, '/throw');
  assert.match(record.logs, /about to throw/);

  const notResponse = await fetch(fnUrl(aliceHandle, 'echo', '/not-a-response'));
  assert.is(notResponse.status, 502);
  assert.match((await json(notResponse)).error.message, /must return a Response/);

  const crashed = await fetch(fnUrl(aliceHandle, 'echo', '/crash'));
  assert.is(crashed.status, 502);
  assert.is(crashed.headers.get('x-containerpub-error'), 'function_crashed');
  assert.is(crashed.headers.get('x-function-version'), '1');

  const hung = await fetch(fnUrl(aliceHandle, 'echo', '/hang'));
  assert.is(hung.status, 504);
  assert.is(hung.headers.get('x-containerpub-error'), 'function_timeout');
  const timeoutRecord = await waitForInvocation(alice, echoFn.id, hung.headers.get('x-request-id')!);
  assert.is(timeoutRecord.outcome, 'timeout');
  assert.is(timeoutRecord.status, 504);

  // a function's own 500 is its answer, not a platform error
  const own = await fetch(fnUrl(aliceHandle, 'echo', '/x?status=500'));
  assert.is(own.status, 500);
  assert.is(own.headers.get('x-containerpub-error'), null);
});

echo('invocations through the endpoint are recorded with method, path (no query) and status', async () => {
  const res = await fetch(fnUrl(aliceHandle, 'echo', '/recorded/path?secret=abc'), { method: 'DELETE' });
  assert.is(res.status, 200);
  const record = await waitForInvocation(alice, echoFn.id, res.headers.get('x-request-id')!);
  assert.is(record.method, 'DELETE');
  assert.is(record.path, '/recorded/path');
  assert.is(record.status, 200);
  assert.is(record.outcome, 'ok');
  assert.match(record.logs, /echo DELETE \/recorded\/path/);
});

echo('the caller leaving mid-stream does not cost the instance', async () => {
  const before = await json(await fetch(fnUrl(aliceHandle, 'echo', '/calls')));
  const ac = new AbortController();
  const res = await fetch(fnUrl(aliceHandle, 'echo', '/stream'), { signal: ac.signal });
  await res.body!.getReader().read();
  ac.abort();
  const after = await waitFor('the instance to answer again', async () => {
    const r = await json(await fetch(fnUrl(aliceHandle, 'echo', '/calls')));
    return r.instanceId === before.instanceId ? r : undefined;
  });
  assert.is(after.instanceId, before.instanceId);
});

echo.run();

// ------------------------------------------------------------------------------------------

const access = suite('access, keys and version pinning');

access('a new function is private: 401 without credentials, 404 for another user, the owner gets through', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'secret', await makeNodeFunction(EVENT));
  const me = await owner.get('/api/auth/me');
  const url = fnUrl(me.body.handle, 'secret');
  const anon = await fetch(url, { method: 'POST', body: '{"a":1}' });
  assert.is(anon.status, 401);
  assert.is(anon.headers.get('x-containerpub-error'), 'unauthorized');
  assert.ok(anon.headers.get('www-authenticate'));
  const wrong = await fetch(url, { headers: { authorization: 'Bearer cp_not-a-token' } });
  assert.is(wrong.status, 401);
  const other = await user();
  const stranger = await fetch(url, { headers: { authorization: `Bearer ${other.token}` } });
  assert.is(stranger.status, 404);
  assert.is(stranger.headers.get('x-containerpub-error'), 'function_not_found');
  const ok = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${owner.token}` }, body: '{"a":1}' });
  assert.is(ok.status, 200);
  assert.equal(await json(ok), { got: { a: 1 }, version: 1 });
  const fn = await owner.get(`/api/functions/${d.id}`);
  assert.is(fn.body.access, 'private');
});

access('key access: a key in Authorization or X-Function-Key opens it; a deleted key stops working within 5 s', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'keyed', await makeNodeFunction(ECHO));
  const patched = await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'key' } });
  assert.is(patched.body.access, 'key');
  const url = `${patched.body.url}/who`;
  assert.ok(url.startsWith(`${tp.url}/fn/`));
  assert.is((await fetch(url)).status, 401);
  const created = await owner.post(`/api/functions/${d.id}/keys`, { name: 'ci' });
  assert.is(created.status, 201);
  assert.match(created.body.key, /^fk_/);
  assert.equal(Object.keys(created.body).sort(), ['createdAt', 'id', 'key', 'name']);
  const listed = await owner.get(`/api/functions/${d.id}/keys`);
  assert.equal(listed.body.keys.map((k: any) => [k.id, k.name]), [[created.body.id, 'ci']]);
  assert.not.ok(JSON.stringify(listed.body).includes(created.body.key));

  const viaHeader = await fetch(url, { headers: { 'x-function-key': created.body.key } });
  assert.is(viaHeader.status, 200);
  const echoed = await json(viaHeader);
  assert.is(echoed.headers['x-function-key'], undefined, 'the key is not shown to the function');
  const viaBearer = await fetch(url, { headers: { authorization: `Bearer ${created.body.key}` } });
  assert.is(viaBearer.status, 200);
  assert.is((await json(viaBearer)).headers.authorization, undefined);
  // the owner's token works too; a key of another function does not
  assert.is((await fetch(url, { headers: { authorization: `Bearer ${owner.token}` } })).status, 200);
  const otherFn = await deployAndBuild(owner, 'other', await makeNodeFunction(EVENT));
  const otherKey = await owner.post(`/api/functions/${otherFn.id}/keys`, { name: 'x' });
  assert.is((await fetch(url, { headers: { 'x-function-key': otherKey.body.key } })).status, 401);
  // someone else's token is no key
  const stranger = await user();
  assert.is((await fetch(url, { headers: { authorization: `Bearer ${stranger.token}` } })).status, 401);
  assert.is((await stranger.get(`/api/functions/${d.id}/keys`)).status, 404);

  const removed = await owner.del(`/api/functions/${d.id}/keys/${created.body.id}`);
  assert.is(removed.status, 204);
  assert.is((await owner.del(`/api/functions/${d.id}/keys/${created.body.id}`)).status, 404);
  await waitFor('the deleted key to stop working', async () => ((await fetch(url, { headers: { 'x-function-key': created.body.key } })).status === 401 ? true : undefined), {
    timeoutMs: 5_000,
    intervalMs: 100,
  });
});

access('a deleted key stops working within 5 s on another API replica too', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'replicated', await makeNodeFunction(EVENT));
  await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'key' } });
  const key = (await owner.post(`/api/functions/${d.id}/keys`, { name: 'r' })).body;
  const replica = await tp.replica();
  try {
    const me = await owner.get('/api/auth/me');
    const url = `${replica.url}/fn/${me.body.handle}/replicated`;
    assert.is((await fetch(url, { method: 'POST', headers: { 'x-function-key': key.key } })).status, 200);
    const deletedAt = Date.now();
    assert.is((await owner.del(`/api/functions/${d.id}/keys/${key.id}`)).status, 204);
    await waitFor('the replica to refuse the deleted key', async () => ((await fetch(url, { method: 'POST', headers: { 'x-function-key': key.key } })).status === 401 ? true : undefined), {
      timeoutMs: 5_000,
      intervalMs: 100,
    });
    assert.ok(Date.now() - deletedAt <= 5_000);
  } finally {
    await replica.close();
  }
});

access('public access: anyone; a bearer token that is not the platform\'s reaches the function untouched', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'open', await makeNodeFunction(ECHO));
  await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'public' } });
  const me = await owner.get('/api/auth/me');
  const res = await fetch(fnUrl(me.body.handle, 'open', '/x'), { headers: { authorization: 'Bearer its-own-scheme' } });
  assert.is(res.status, 200);
  assert.is((await json(res)).headers.authorization, 'Bearer its-own-scheme');
  // and back to private
  await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'private' } });
  await waitFor('private again', async () => ((await fetch(fnUrl(me.body.handle, 'open', '/x'))).status === 401 ? true : undefined));
});

access('PATCH validates: an unknown mode or field is a 400, another user\'s function a 404', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'valid', await makeNodeFunction(EVENT));
  const bad = await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'everyone' } });
  assert.is(bad.status, 400);
  assert.is(bad.body.error.code, 'validation_failed');
  assert.is((await owner.request('PATCH', `/api/functions/${d.id}`, { json: { acces: 'public' } })).status, 400);
  assert.is((await owner.request('PATCH', `/api/functions/${d.id}`, { body: 'nope', headers: { 'content-type': 'application/json' } })).status, 400);
  const other = await user();
  assert.is((await other.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'public' } })).status, 404);
  assert.is((await owner.get(`/api/functions/${d.id}`)).body.access, 'private');
  assert.is((await owner.post(`/api/functions/${d.id}/keys`, { name: '' })).status, 400);
});

access('version pinning: @v1 serves version 1 to the owner and key holders; public callers get 401 for it', async () => {
  const owner = await user();
  const v1 = await deployAndBuild(owner, 'pinned', await makeNodeFunction(`export default { fetch: (r, c) => Response.json({ v: c.version, tag: 'one' }) };`));
  await deployAndBuild(owner, 'pinned', await makeNodeFunction(`export default { fetch: (r, c) => Response.json({ v: c.version, tag: 'two' }) };`));
  await owner.request('PATCH', `/api/functions/${v1.id}`, { json: { access: 'public' } });
  const me = await owner.get('/api/auth/me');
  const live = await fetch(fnUrl(me.body.handle, 'pinned', '/'));
  assert.equal(await json(live), { v: 2, tag: 'two' });
  assert.is(live.headers.get('x-function-version'), '2');
  const anonPinned = await fetch(fnUrl(me.body.handle, 'pinned@v1', '/'));
  assert.is(anonPinned.status, 401);
  const ownerPinned = await fetch(fnUrl(me.body.handle, 'pinned@v1', '/x'), { headers: { authorization: `Bearer ${owner.token}` } });
  assert.is(ownerPinned.status, 200);
  assert.equal(await json(ownerPinned), { v: 1, tag: 'one' });
  assert.is(ownerPinned.headers.get('x-function-version'), '1');
  const key = (await owner.post(`/api/functions/${v1.id}/keys`, { name: 'pin' })).body.key;
  const keyPinned = await fetch(fnUrl(me.body.handle, 'pinned@v1'), { headers: { 'x-function-key': key } });
  assert.equal(await json(keyPinned), { v: 1, tag: 'one' });
  const missing = await fetch(fnUrl(me.body.handle, 'pinned@v9'), { headers: { 'x-function-key': key } });
  assert.is(missing.status, 404);
  assert.is(missing.headers.get('x-containerpub-error'), 'version_not_found');
});

access('404 for an unknown handle or name, 409 with no live version', async () => {
  const owner = await user();
  const me = await owner.get('/api/auth/me');
  for (const url of [fnUrl('no-such-handle-xyz', 'echo'), fnUrl(me.body.handle, 'nothing-here'), `${tp.url}/fn/`, `${tp.url}/fn/UPPER_case/x`]) {
    const res = await fetch(url);
    assert.is(res.status, 404, url);
    assert.is(res.headers.get('x-containerpub-error'), 'function_not_found', url);
    assert.ok(res.headers.get('x-request-id'), url);
    assert.is((await json(res)).error.code, 'function_not_found');
  }
  // a function whose only version has not been built yet
  const dep = await owner.post('/api/functions/deploy', { name: 'unbuilt', sizeBytes: 10, sha256: 'a'.repeat(64) });
  assert.is(dep.status, 201);
  await owner.request('PATCH', `/api/functions/${dep.body.id}`, { json: { access: 'public' } });
  const none = await fetch(fnUrl(me.body.handle, 'unbuilt'));
  assert.is(none.status, 409);
  assert.is(none.headers.get('x-containerpub-error'), 'no_active_deployment');
});

access.run();

// ------------------------------------------------------------------------------------------

const handles = suite('handles, URLs, event handlers, host routing');

handles('a handle is chosen at registration or derived from the email; taken and malformed ones are refused', async () => {
  const chosen = `h-${Math.random().toString(36).slice(2, 10)}`;
  const a = await tp.http.post('/api/auth/register', { email: `${chosen}@example.com`, password: 'correct horse battery', handle: chosen });
  assert.is(a.status, 201);
  assert.is(a.body.handle, chosen);
  const me = await client(tp.url, a.body.token).get('/api/auth/me');
  assert.is(me.body.handle, chosen);
  const taken = await tp.http.post('/api/auth/register', { email: `x${chosen}@example.com`, password: 'correct horse battery', handle: chosen });
  assert.is(taken.status, 409);
  assert.is(taken.body.error.code, 'handle_taken');
  for (const bad of ['-lead', 'trail-', 'dou--ble', 'UPPER', 'a'.repeat(40), '', 'sp ace']) {
    const res = await tp.http.post('/api/auth/register', { email: `y${Math.random()}@example.com`, password: 'correct horse battery', handle: bad });
    assert.is(res.status, 400, bad);
  }
  // derived: the email's local part, made unique
  const local = `Derived.Name+${Math.random().toString(36).slice(2, 8)}`;
  const d1 = await tp.http.post('/api/auth/register', { email: `${local}@example.com`, password: 'correct horse battery' });
  const d2 = await tp.http.post('/api/auth/register', { email: `${local}@example.org`, password: 'correct horse battery' });
  assert.is(d1.body.handle, local.toLowerCase().replace(/[^a-z0-9]+/g, '-'));
  assert.is(d2.body.handle, `${d1.body.handle}-2`);
});

handles('concurrent registrations deriving the same handle all get distinct ones', async () => {
  const local = `same${Math.random().toString(36).slice(2, 8)}`;
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) => tp.http.post('/api/auth/register', { email: `${local}@d${i}.example.com`, password: 'correct horse battery' })),
  );
  for (const r of results) assert.is(r.status, 201, JSON.stringify(r.body));
  assert.is(new Set(results.map((r) => r.body.handle)).size, 8);
});

handles('the function JSON shows access, url (the origin the API was reached at) and hostUrl (FUNCTIONS_DOMAIN)', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'shown', await makeNodeFunction(EVENT));
  const me = await owner.get('/api/auth/me');
  const fn = await owner.get(`/api/functions/${d.id}`);
  const port = new URL(tp.url).port;
  assert.is(fn.body.url, `${tp.url}/fn/${me.body.handle}/shown`);
  assert.is(fn.body.hostUrl, `http://shown--${me.body.handle}.fn.localtest:${port}`);
  const list = await owner.get('/api/functions');
  assert.is(list.body.functions[0].url, fn.body.url);
  assert.is(list.body.functions[0].access, 'private');
});

handles('an event handler on its endpoint: the JSON body (or null) is the event, the result JSON 200; bad JSON is a 400', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'evented', await makeNodeFunction(EVENT));
  await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'public' } });
  const me = await owner.get('/api/auth/me');
  const url = fnUrl(me.body.handle, 'evented', '/any/path');
  const res = await fetch(url, { method: 'POST', body: JSON.stringify({ n: [1, 2] }) });
  assert.is(res.status, 200);
  assert.is(res.headers.get('content-type'), 'application/json');
  assert.equal(await json(res), { got: { n: [1, 2] }, version: 1 });
  const empty = await fetch(url);
  assert.equal(await json(empty), { got: null, version: 1 });
  const bad = await fetch(url, { method: 'POST', body: '{nope' });
  assert.is(bad.status, 400);
  assert.is(bad.headers.get('x-containerpub-error'), 'invalid_json');
  const record = await waitForInvocation(owner, d.id, res.headers.get('x-request-id')!);
  assert.match(record.logs, /event handler ran/);
});

handles('the same function answers through its endpoint and through /invoke (event and HTTP handlers)', async () => {
  const owner = await user();
  const ev = await deployAndBuild(owner, 'both-event', await makeNodeFunction(EVENT));
  const viaInvoke = await owner.post(`/api/functions/${ev.id}/invoke`, { k: 'v' });
  assert.equal(viaInvoke.body.result, { got: { k: 'v' }, version: 1 });
  const me = await owner.get('/api/auth/me');
  const viaEndpoint = await fetch(fnUrl(me.body.handle, 'both-event'), { method: 'POST', headers: { authorization: `Bearer ${owner.token}` }, body: '{"k":"v"}' });
  assert.equal(await json(viaEndpoint), viaInvoke.body.result);

  const httpFn = await deployAndBuild(owner, 'both-http', await makeNodeFunction(ECHO));
  const invoked = await owner.post(`/api/functions/${httpFn.id}/invoke`, { k: 'v' });
  assert.is(invoked.status, 200, JSON.stringify(invoked.body));
  assert.is(invoked.body.result.status, 200);
  const inner = JSON.parse(invoked.body.result.body);
  assert.is(inner.method, 'POST');
  assert.equal(JSON.parse(Buffer.from(inner.bodyBase64, 'base64').toString()), { k: 'v' });
});

handles('host-based routing: {name}--{handle}.FUNCTIONS_DOMAIN serves the function at its root', async () => {
  const owner = await user();
  const d = await deployAndBuild(owner, 'hosted', await makeNodeFunction(ECHO));
  await owner.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'public' } });
  const me = await owner.get('/api/auth/me');
  const get = (host: string, path: string) =>
    new Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      const u = new URL(tp.url);
      const req = http.request({ host: u.hostname, port: u.port, path, headers: { host } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      });
      req.on('error', reject);
      req.end();
    });
  const res = await get(`hosted--${me.body.handle}.fn.localtest:8080`, '/api/functions?q=1');
  assert.is(res.status, 200);
  const body = JSON.parse(res.body);
  assert.is(body.path, '/api/functions', 'every path on the function host is the function\'s');
  assert.is(body.query, '?q=1');
  assert.is(body.headers['x-forwarded-prefix'], undefined);
  assert.is(body.url, `http://hosted--${me.body.handle}.fn.localtest:8080/api/functions?q=1`);
  const unknown = await get(`nope--${me.body.handle}.fn.localtest`, '/');
  assert.is(unknown.status, 404);
  assert.is(unknown.headers['x-containerpub-error'], 'function_not_found');
  const malformed = await get('no-separator.fn.localtest', '/');
  assert.is(malformed.status, 404);
  // the API itself still answers on its own host
  const health = await get('api.localtest:8080', '/healthz');
  assert.ok(health.status < 500);
});

handles.after(() => tp.close());
handles.run();
