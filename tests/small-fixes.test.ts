// Small hardening fixes over HTTP: an oversized invocation event is refused as an event, before
// its body is sent when the client asked first (Expect: 100-continue); a function whose only
// versions failed says `failed`.
import http from 'node:http';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_EVENT_BYTES } from '../api/routes/invoke.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction, makeTarGz } from './support/archives.ts';
import { declaration, deployAndBuild, deployPresigned, waitForBuild } from './support/flows.ts';

const t = await startTestPlatform({}, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

/** POST with Expect: 100-continue; the body is written only if the server says 100 Continue. */
function postExpectingContinue(path: string, token: string, body: Buffer) {
  return new Promise<{ status: number; text: string; gotContinue: boolean; bodySent: boolean }>((resolve, reject) => {
    const url = new URL(tp.url + path);
    let gotContinue = false;
    let bodySent = false;
    const req = http.request({
      host: url.hostname,
      port: url.port,
      path: url.pathname + url.search,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': body.length, expect: '100-continue' },
    });
    req.on('continue', () => {
      gotContinue = true;
      bodySent = true;
      req.end(body);
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, text, gotContinue, bodySent }));
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

const s = suite('small fixes');
s.after(() => tp.close());

s('an event over the limit with Expect: 100-continue: 413 naming the event, before any body is sent', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'bigevent', await makeNodeFunction('export default async (e) => ({ n: Object.keys(e).length });'));
  const res = await postExpectingContinue(`/api/functions/${d.id}/invoke`, api.token, Buffer.alloc(MAX_EVENT_BYTES + 1, 0x20));
  assert.is(res.status, 413, res.text);
  assert.not.ok(res.gotContinue, 'the server must not ask for the body it refuses');
  assert.not.ok(res.bodySent);
  const body = JSON.parse(res.text);
  assert.is(body.error.code, 'payload_too_large');
  assert.match(body.error.message, /^event is \d+ bytes, over the limit of \d+ bytes$/);
  // a small event with the same header gets its 100 Continue and runs
  const ok = await postExpectingContinue(`/api/functions/${d.id}/invoke`, api.token, Buffer.from('{"a":1}'));
  assert.is(ok.status, 200, ok.text);
  assert.ok(ok.gotContinue);
  assert.equal(JSON.parse(ok.text).result, { n: 1 });
});

s('an event over the limit without a Content-Length (chunked): 413 naming the event', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'chunked', await makeNodeFunction('export default async () => 1;'));
  const big = new Blob([Buffer.alloc(MAX_EVENT_BYTES + 1, 0x20)]).stream();
  const res = await fetch(`${tp.url}/api/functions/${d.id}/invoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}` },
    body: big,
    duplex: 'half',
  } as RequestInit);
  assert.is(res.status, 413);
  assert.match(((await res.json()) as any).error.message, /^event exceeds the limit/);
});

s('a JSON body over 1 MiB: 413 whether its length is declared or it comes chunked', async () => {
  const api = await tp.newUser();
  const big = JSON.stringify({ name: 'x', pad: 'y'.repeat(1024 * 1024) });
  const declared = await fetch(`${tp.url}/api/functions/deploy`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
    body: big,
  });
  assert.is(declared.status, 413);
  const declaredError = ((await declared.json()) as any).error;
  assert.is(declaredError.code, 'payload_too_large');
  assert.is(declaredError.message, `request body is ${Buffer.byteLength(big)} bytes, over the limit of 1048576 bytes`);
  const chunked = await fetch(`${tp.url}/api/functions/deploy`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
    body: new Blob([big]).stream(),
    duplex: 'half',
  } as RequestInit);
  assert.is(chunked.status, 413, 'a body with no declared length is counted as it arrives');
  const chunkedError = ((await chunked.json()) as any).error;
  assert.is(chunkedError.code, 'payload_too_large');
  assert.is(chunkedError.message, 'request body exceeds the limit of 1048576 bytes');
  // a small chunked body still works
  const small = await fetch(`${tp.url}/api/functions/deploy`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
    body: new Blob([JSON.stringify({ name: 'small' })]).stream(),
    duplex: 'half',
  } as RequestInit);
  assert.is(small.status, 400, 'read and validated (sizeBytes missing), not refused for its size');
  assert.is(((await small.json()) as any).error.code, 'validation_failed');
});

s('a JSON body is read whole on a kept-alive connection, in one packet or split over several', async () => {
  const api = await tp.newUser();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(tp.url);
  // each request's body names its own function; the split one arrives in parts
  const post = (name: string, split: boolean) =>
    new Promise<{ status: number; body: any; reused: boolean }>((resolve, reject) => {
      const body = Buffer.from(JSON.stringify({ name, ...declaration() }));
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: '/api/functions/deploy',
          method: 'POST',
          headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json', 'content-length': body.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()), reused: req.reusedSocket }));
        },
      );
      req.on('error', reject);
      if (!split) return req.end(body);
      // the headers and a first part now, the rest once the server has begun on the request
      req.write(body.subarray(0, 5));
      setImmediate(() => {
        req.write(body.subarray(5, 9));
        setImmediate(() => req.end(body.subarray(9)));
      });
    });
  try {
    const results = [];
    for (const [i, split] of [false, true, false, true, false].entries()) results.push(await post(`kept-${i}`, split));
    for (const [i, r] of results.entries()) {
      assert.is(r.status, 201, JSON.stringify(r.body));
      assert.is(r.body.name, `kept-${i}`, 'each answer is for its own body');
    }
    assert.ok(results.slice(1).every((r) => r.reused), 'one connection, kept alive between the requests');
  } finally {
    agent.destroy();
  }
});

s('a function whose only versions failed is `failed`, and `pending` again while a new one is on its way', async () => {
  const api = await tp.newUser();
  const broken = await makeTarGz([{ name: 'README.md', content: 'no handler here' }]);
  const d = await deployPresigned(api, 'doomed', broken);
  const built = await waitForBuild(api, d.id, d.version);
  assert.is(built.status, 'failed');
  assert.is((await api.get(`/api/functions/${d.id}`)).body.status, 'failed');
  const listed = await api.get('/api/functions');
  assert.is(listed.body.functions.find((f: any) => f.id === d.id).status, 'failed');
  assert.is((await api.post('/api/functions/deploy', { name: 'doomed', ...declaration() })).status, 201);
  assert.is((await api.get(`/api/functions/${d.id}`)).body.status, 'pending');
});

s.run();
