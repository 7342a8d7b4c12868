// Releases carry configuration (process driver, SQLite and PostgreSQL): a configuration change is a
// new version without a build, a rollback restores code and configuration together, limits take
// effect per version, bad configuration is refused before any version is made.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, deployAndBuild, waitForBuild } from './support/flows.ts';
import type { Client } from './support/http.ts';
import { waitFor } from './support/services.ts';

const t = await startTestPlatform({ FUNCTION_IDLE_MS: '400', FUNCTION_TIMEOUT_MS: '5000' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const ENV_READER = `
export default async (event, context) => {
  if (event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  if (event.allocate) { const keep = []; for (;;) keep.push(new Array(1e6).fill(Math.random())); }
  if (event.fetch) { const res = await fetch(event.fetch); return { fetched: await res.text() }; }
  return { greeting: process.env.GREETING ?? null, other: process.env.OTHER ?? null, version: context.version, pid: process.pid };
};`;

/** PATCH …/config, then wait for the new version to be built (or failed). */
async function changeConfig(api: Client, id: string, patch: unknown) {
  const res = await api.request('PATCH', `/api/functions/${id}/config`, { json: patch });
  assert.is(res.status, 202, JSON.stringify(res.body));
  assert.is(res.body.source, 'config');
  const built = await waitForBuild(api, id, res.body.version);
  return { ...res.body, built };
}

const releases = suite('configuration changes are releases');

releases('PATCH config adds a variable: a new version, live without a build, and the handler sees it; rollback removes it', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'configured', await makeNodeFunction(ENV_READER));
  assert.equal((await api.post(`/api/functions/${d.id}/invoke`, {})).body.result.greeting, null);

  const change = await changeConfig(api, d.id, { env: { GREETING: 'hello' } });
  assert.is(change.version, 2);
  assert.is(change.built.status, 'active', change.built.error ?? '');
  assert.is(change.built.source, 'config');
  assert.equal(change.built.config.env, { GREETING: 'hello' });
  assert.match(change.built.buildLogs, /reusing the code of version 1, no build/);
  assert.not.match(change.built.buildLogs, /unpacking|validating/);
  assert.match(change.built.buildLogs, /readiness check passed/);
  const fn = await api.get(`/api/functions/${d.id}`);
  assert.is(fn.body.activeVersion, 2);
  const live = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.equal([live.body.result.greeting, live.body.result.version], ['hello', 2]);

  const rb = await api.post(`/api/functions/${d.id}/rollback`, { version: 1 });
  assert.is(rb.status, 200);
  const back = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.equal([back.body.result.greeting, back.body.result.version], [null, 1]);
  // and forward again: version 2 still runs with its configuration
  await api.post(`/api/functions/${d.id}/rollback`, { version: 2 });
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).body.result.greeting, 'hello');

  const history = await api.get(`/api/functions/${d.id}/deployments`);
  assert.equal(history.body.deployments.map((x: any) => [x.version, x.source]), [[2, 'config'], [1, 'deploy']]);
});

releases('a deploy inherits the latest configuration, may patch it (null removes a key), and carries metadata', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'inherits', await makeNodeFunction(ENV_READER));
  await changeConfig(api, d.id, { env: { GREETING: 'hi', OTHER: 'x' }, timeoutMs: 4000 });
  const archive = await makeNodeFunction(ENV_READER + '\n// v3');
  const deploy = await api.post('/api/functions/deploy', {
    name: 'inherits',
    ...declaration(archive),
    config: { env: { OTHER: null } },
    metadata: { message: 'drop OTHER', gitSha: 'abc1234', author: 'Ada' },
  });
  assert.is(deploy.status, 201, JSON.stringify(deploy.body));
  const put = await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  assert.is(put.status, 200);
  await api.post(`/api/functions/${d.id}/deployments/${deploy.body.version}/complete`);
  const built = await waitForBuild(api, d.id, deploy.body.version);
  assert.is(built.status, 'active', built.error ?? '');
  assert.is(built.source, 'deploy');
  assert.equal(built.config.env, { GREETING: 'hi' });
  assert.is(built.config.timeoutMs, 4000);
  assert.equal(built.metadata, { message: 'drop OTHER', gitSha: 'abc1234', author: 'Ada' });
  const out = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.equal([out.body.result.greeting, out.body.result.other], ['hi', null]);
  const current = await api.get(`/api/functions/${d.id}/config`);
  assert.equal(current.body.env, { GREETING: 'hi' });
  assert.is(current.body.version, 3);
});

releases('bad configuration gets 400 and no version is made', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'strict', await makeNodeFunction(ENV_READER));
  const bad = [
    { env: { 'lower-case': 'x' } },
    { env: { CONTAINERPUB_VERSION: 'x' } },
    { env: { '1ABC': 'x' } },
    { env: { OK: 5 } },
    { memoryMb: 32 },
    { memoryMb: 5000 },
    { timeoutMs: 50 },
    { timeoutMs: 900_001 },
    { concurrency: 0 },
    { minInstances: 5, maxInstances: 2 },
    { network: 'everywhere' },
    { unknown: 1 },
  ];
  for (const patch of bad) {
    const res = await api.request('PATCH', `/api/functions/${d.id}/config`, { json: patch });
    assert.is(res.status, 400, JSON.stringify(patch));
    assert.is(res.body.error.code, 'validation_failed', JSON.stringify(res.body));
  }
  // the message says what is wrong with a name, not just that it is
  const reserved = await api.request('PATCH', `/api/functions/${d.id}/config`, { json: { env: { CONTAINERPUB_X: 'y' } } });
  assert.match(reserved.body.error.message, /env\.CONTAINERPUB_X: the CONTAINERPUB_ prefix is reserved/);
  const lower = await api.request('PATCH', `/api/functions/${d.id}/config`, { json: { secrets: { 'bad-name': 'y' } } });
  assert.match(lower.body.error.message, /secrets\.bad-name: must be A-Z, 0-9 and _/);
  const deploy = await api.post('/api/functions/deploy', { name: 'strict', ...declaration(), config: { memoryMb: 1 } });
  assert.is(deploy.status, 400);
  const fn = await api.get(`/api/functions/${d.id}`);
  assert.is(fn.body.latestVersion, 1, 'no version number was spent');
  const other = await tp.newUser();
  assert.is((await other.request('PATCH', `/api/functions/${d.id}/config`, { json: { env: { A: 'b' } } })).status, 404);
});

releases('a configuration change needs a live version (409), and an instance that cannot start with it fails the change, not the live version', async () => {
  const api = await tp.newUser();
  const pending = await api.post('/api/functions/deploy', { name: 'not-live', ...declaration() });
  const none = await api.request('PATCH', `/api/functions/${pending.body.id}/config`, { json: { env: { A: 'b' } } });
  assert.is(none.status, 409);
  assert.is(none.body.error.code, 'no_active_deployment');

  const d = await deployAndBuild(api, 'picky', await makeNodeFunction(`if (process.env.BREAK) throw new Error('refusing to start: BREAK is set');\nexport default async () => ({ ok: true });`));
  const change = await changeConfig(api, d.id, { env: { BREAK: '1' } });
  assert.is(change.built.status, 'failed');
  assert.match(change.built.buildLogs, /refusing to start/);
  assert.is((await api.get(`/api/functions/${d.id}`)).body.activeVersion, 1);
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
});

releases.run();

const limits = suite('limits take effect per version');

limits('timeoutMs is enforced per version', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'slow', await makeNodeFunction(ENV_READER));
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, { sleep: 1500 })).status, 200);
  await changeConfig(api, d.id, { timeoutMs: 500 });
  const res = await api.post(`/api/functions/${d.id}/invoke`, { sleep: 1500 });
  assert.is(res.status, 504);
  assert.match(res.body.error.message, /500 ms/);
  // version 1 keeps its own (platform default) timeout
  assert.is((await api.post(`/api/functions/${d.id}/invoke?version=1`, { sleep: 1500 })).status, 200);
});

limits('memoryMb is enforced: a handler that allocates past it gets 502 saying so, and the next call works', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'hungry', await makeNodeFunction(ENV_READER));
  const change = await changeConfig(api, d.id, { memoryMb: 64 });
  assert.is(change.built.config.memoryMb, 64);
  const res = await api.post(`/api/functions/${d.id}/invoke`, { allocate: true });
  assert.is(res.status, 502);
  assert.is(res.body.error.code, 'function_crashed');
  assert.match(res.body.error.message, /out of memory \(limit 64 MB\)/);
  const next = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(next.status, 200);
});

limits('minInstances=1 keeps one instance of the live version after the idle time; a version without it scales to zero', async () => {
  const api = await tp.newUser();
  const kept = await deployAndBuild(api, 'kept', await makeNodeFunction(ENV_READER));
  const change = await changeConfig(api, kept.id, { minInstances: 1 });
  assert.is(change.built.status, 'active');
  const idle = await deployAndBuild(api, 'idler', await makeNodeFunction(ENV_READER));
  await api.post(`/api/functions/${kept.id}/invoke`, {});
  await api.post(`/api/functions/${idle.id}/invoke`, {});
  // FUNCTION_IDLE_MS is 400: the other function's instance goes, this one's stays
  await waitFor('the function without minInstances to scale to zero', async () =>
    (await api.get(`/api/functions/${idle.id}/instances`)).body.instances.length === 0 ? true : undefined,
  );
  // (this one was called first, so its idle time ran out first too)
  const list = (await api.get(`/api/functions/${kept.id}/instances`)).body.instances;
  assert.is(list.length, 1);
  assert.is(list[0].version, 2);
  // a kept instance that crashes is replaced
  const pid = (await api.post(`/api/functions/${kept.id}/invoke`, {})).body.result.pid;
  process.kill(pid, 'SIGKILL');
  await waitFor('a replacement instance', async () => {
    const now = (await api.get(`/api/functions/${kept.id}/instances`)).body.instances;
    return now.length === 1 && now[0].id !== list[0].id && now[0].state !== 'starting' ? true : undefined;
  }, { timeoutMs: 10_000 });
});

limits('maxInstances and concurrency bound the version\'s pool', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'bounded', await makeNodeFunction(`export default async (event) => { const start = Date.now(); await new Promise((r) => setTimeout(r, 300)); return { pid: process.pid, start, end: Date.now() }; };`));
  await changeConfig(api, d.id, { maxInstances: 1, concurrency: 2 });
  const results = (await Promise.all(Array.from({ length: 4 }, () => api.post(`/api/functions/${d.id}/invoke`, {})))).map((r) => {
    assert.is(r.status, 200, JSON.stringify(r.body));
    return r.body.result;
  });
  assert.is(new Set(results.map((r) => r.pid)).size, 1, 'one instance at most');
  // two at a time on it: at no moment more than two run, and some two overlap
  const at = (t: number) => results.filter((r) => r.start <= t && t < r.end).length;
  assert.ok(Math.max(...results.map((r) => at(r.start))) === 2, JSON.stringify(results));
});

limits('network "outbound": the function reaches a server on 127.0.0.1 (process driver: no isolation either way)', async () => {
  const server = http.createServer((_req, res) => res.end('pong'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const api = await tp.newUser();
    const d = await deployAndBuild(api, 'caller', await makeNodeFunction(ENV_READER));
    const change = await changeConfig(api, d.id, { network: 'outbound' });
    assert.is(change.built.config.network, 'outbound');
    const port = (server.address() as AddressInfo).port;
    const res = await api.post(`/api/functions/${d.id}/invoke`, { fetch: `http://127.0.0.1:${port}/` });
    assert.equal(res.body.result, { fetched: 'pong' });
  } finally {
    server.close();
  }
});

limits.after(() => tp.close());
limits.run();
