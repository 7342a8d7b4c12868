// The examples in examples/ as a user meets them: each directory packed as the CLI packs it,
// deployed and built by a real runner, made public, and called on its endpoint URL with real
// fetch: the JSON API's routes, the server-sent events (the first before the stream ends) and the
// event function.
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { packDirectory } from '../scripts/cli/pack.ts';
import { repoRoot } from './support/cli.ts';
import { deployAndBuild } from './support/flows.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';

// One instance per version: the to-do list lives in module state, so every request must reach the
// same instance for the routes to see each other's writes.
const t = await startTestPlatform({ FUNCTION_MAX_INSTANCES: '1' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;
const api = await tp.newUser();

/** Deploys examples/<dir> as `name`, waits for it to be live, makes it public; returns its URL. */
async function deployExample(dir: string, name: string): Promise<{ id: string; url: string }> {
  const packed = await packDirectory(path.join(repoRoot, 'examples', dir));
  const { id, built } = await deployAndBuild(api, name, packed.buffer);
  assert.is(built.status, 'active', `${dir} built: ${built.error}\n${built.buildLogs}`);
  assert.is(built.isActive, true, `${dir} is live`);
  const fn = await api.get(`/api/functions/${id}`);
  assert.is(fn.body.access, 'private', 'a new function is private');
  const denied = await fetch(fn.body.url);
  assert.is(denied.status, 401, 'private: no credentials, no answer');
  assert.is(denied.headers.get('x-containerpub-error'), 'unauthorized');
  const patched = await api.request('PATCH', `/api/functions/${id}`, { json: { access: 'public' } });
  assert.is(patched.status, 200, JSON.stringify(patched.body));
  assert.is(patched.body.access, 'public');
  return { id, url: fn.body.url as string };
}

/** A request with real fetch; the body parsed as JSON when it is JSON. */
async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, init);
  const text = await res.text();
  const isJson = (res.headers.get('content-type') ?? '').includes('application/json');
  return { status: res.status, headers: res.headers, body: isJson && text !== '' ? JSON.parse(text) : text };
}

const postJson = (body: unknown, method = 'POST'): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

/** The function's own answer: versioned, with a request id, and no platform error header. */
function fromFunction(res: { headers: Headers }, version = 1) {
  assert.is(res.headers.get('x-containerpub-error'), null, 'an answer of the function, not of the platform');
  assert.is(res.headers.get('x-function-version'), String(version));
  assert.ok(res.headers.get('x-request-id'), 'X-Request-Id');
}

// ---------------------------------------------------------------------------------------------
const httpApi = suite('examples/http-api: a JSON API with routing');

httpApi('the routes answer on the public URL, with state kept in the warm instance', async () => {
  const { url } = await deployExample('http-api', 'api');
  const prefix = new URL(url).pathname; // /fn/{handle}/api

  const about = await call(`${url}/`);
  assert.is(about.status, 200, JSON.stringify(about.body));
  fromFunction(about);
  assert.is(about.body.service, 'todos');
  assert.is(about.body.version, 1, 'context.version reaches an HTTP handler');

  const empty = await call(`${url}/todos`);
  assert.is(empty.status, 200);
  assert.equal(empty.body, { todos: [] });

  const created = await call(`${url}/todos`, postJson({ title: 'buy milk' }));
  assert.is(created.status, 201, JSON.stringify(created.body));
  fromFunction(created);
  assert.is(created.body.title, 'buy milk');
  assert.is(created.body.done, false);
  const id = created.body.id as number;
  assert.is(created.headers.get('location'), `${prefix}/todos/${id}`, 'built from x-forwarded-prefix');
  assert.is((await call(`${url}/todos`, postJson({ title: 'walk the dog' }))).status, 201);

  const one = await call(`${url}/todos/${id}`);
  assert.is(one.status, 200);
  assert.equal(one.body, created.body);

  const patched = await call(`${url}/todos/${id}`, postJson({ done: true }, 'PATCH'));
  assert.is(patched.status, 200, JSON.stringify(patched.body));
  assert.is(patched.body.done, true);
  const done = await call(`${url}/todos?done=true`);
  assert.equal(done.body.todos.map((t: { title: string }) => t.title), ['buy milk']);
  const open = await call(`${url}/todos?done=false`);
  assert.equal(open.body.todos.map((t: { title: string }) => t.title), ['walk the dog']);

  const removed = await call(`${url}/todos/${id}`, { method: 'DELETE' });
  assert.is(removed.status, 204);
  assert.is(removed.body, '');
  const gone = await call(`${url}/todos/${id}`);
  assert.is(gone.status, 404);
  assert.equal(gone.body, { error: 'not_found', message: `no to-do ${id}` });
});

httpApi('unknown routes are a JSON 404 and wrong methods a JSON 405, from the function (no platform error header)', async () => {
  const url = (await api.get('/api/functions')).body.functions.find((f: { name: string }) => f.name === 'api').url as string;

  const unknown = await call(`${url}/nope?x=1`);
  assert.is(unknown.status, 404);
  fromFunction(unknown);
  assert.match(unknown.headers.get('content-type') ?? '', /^application\/json/);
  assert.equal(unknown.body, { error: 'not_found', message: 'no route for GET /nope' });

  const wrongMethod = await call(`${url}/todos/1`, { method: 'PUT' });
  assert.is(wrongMethod.status, 405);
  fromFunction(wrongMethod);
  assert.is(wrongMethod.headers.get('allow'), 'GET, PATCH, DELETE');
  assert.is(wrongMethod.body.error, 'method_not_allowed');

  const badJson = await call(`${url}/todos`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"title":' });
  assert.is(badJson.status, 400);
  assert.equal(badJson.body, { error: 'bad_request', message: 'the body is not valid JSON' });

  // the platform's own 404, for a function that does not exist, is told apart by its header
  const missing = await call(`${url.replace(/\/api$/, '/no-such-function')}/todos`);
  assert.is(missing.status, 404);
  assert.is(missing.headers.get('x-containerpub-error'), 'function_not_found');
  assert.is(missing.body.error.code, 'function_not_found');
});

// ---------------------------------------------------------------------------------------------
const sse = suite('examples/sse: server-sent events');

interface Tick {
  n: number;
  of: number;
  at: string;
  /** when the test read it */
  receivedAt: number;
}

sse('the events arrive one by one as they are produced, the first long before the stream ends', async () => {
  const { url } = await deployExample('sse', 'ticks');
  const res = await fetch(`${url}?count=5&interval=200`, { signal: AbortSignal.timeout(15_000) });
  assert.is(res.status, 200);
  fromFunction(res);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);

  const ticks: Tick[] = [];
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const fields = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]));
      assert.is(fields.event, 'tick', block);
      const data = JSON.parse(fields.data);
      assert.is(fields.id, String(data.n));
      ticks.push({ ...data, receivedAt: Date.now() });
    }
  }
  const streamEndedAt = Date.now();
  assert.is(buffered, '', 'nothing after the last event');
  assert.equal(ticks.map((e) => e.n), [1, 2, 3, 4, 5]);
  assert.ok(ticks.every((e) => e.of === 5));
  // Causal, not a timing guess: the first event was in our hands before the handler even produced
  // the last one (800 ms later). A buffered response would deliver it only after that.
  const lastProducedAt = Date.parse(ticks[4].at);
  assert.ok(ticks[0].receivedAt < lastProducedAt, `first event read at ${ticks[0].receivedAt}, last produced at ${lastProducedAt}`);
  assert.ok(ticks[0].receivedAt < streamEndedAt);
});

// ---------------------------------------------------------------------------------------------
const eventFn = suite('examples/event: an event function on its endpoint');

eventFn('the JSON body is the event and the result comes back as JSON 200; the same through /invoke', async () => {
  const { id, url } = await deployExample('event', 'words');
  const res = await call(url, postJson({ text: 'the cat and the hat' }));
  assert.is(res.status, 200, JSON.stringify(res.body));
  fromFunction(res);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  assert.is(res.body.words, 5);
  assert.is(res.body.characters, 19);
  assert.equal(res.body.top, [
    { word: 'the', count: 2 },
    { word: 'and', count: 1 },
    { word: 'cat', count: 1 },
  ]);
  assert.is(res.body.version, 1);
  assert.is(res.body.requestId, res.headers.get('x-request-id'), 'context.requestId is the request id the caller sees');

  // no body: the event is null
  const empty = await call(url);
  assert.is(empty.status, 200, JSON.stringify(empty.body));
  assert.is(empty.body.words, 0);
  assert.is(empty.body.hint, 'send {"text": "…"}');

  const invoked = await api.post(`/api/functions/${id}/invoke`, { text: 'the cat and the hat' });
  assert.is(invoked.status, 200, JSON.stringify(invoked.body));
  const { requestId: _a, ...viaInvoke } = invoked.body.result;
  const { requestId: _b, ...viaEndpoint } = res.body;
  assert.equal(viaInvoke, viaEndpoint);
});

eventFn.after(async () => {
  await tp.close();
});

httpApi.run();
sse.run();
eventFn.run();
