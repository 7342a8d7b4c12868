// The runner, invocation and retention with the docker driver, against the real engine and a real
// registry (127.0.0.1:5000): one image per version, pushed; locked-down containers per invocation.
import Docker from 'dockerode';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCleanup } from '../shared/domain/retention.ts';
import { RegistryClient } from '../shared/runtime/registry.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction, makeTarGz } from './support/archives.ts';
import { deployAndBuild, waitForBuild } from './support/flows.ts';
import { TEST_BASE_IMAGE, TEST_REGISTRY, dockerBuildServices, waitFor } from './support/services.ts';
import { runnerEnv, spawnApi } from './support/processes.ts';
import { client } from './support/http.ts';
import os from 'node:os';
import type { Client } from './support/http.ts';

const REGISTRY = TEST_REGISTRY;
/** the Docker network of "outbound" functions in this file (made by the driver on first use) */
const TEST_NETWORK = `containerpub-test-${process.pid}`;
const BASE_IMAGE = TEST_BASE_IMAGE;
if (!(await dockerBuildServices())) process.exit(0);
const registry = new RegistryClient(REGISTRY);
const docker = new Docker();

const t = await startTestPlatform(
  {
    RUNTIME_DRIVER: 'docker',
    REGISTRY,
    FUNCTION_BASE_IMAGE: BASE_IMAGE,
    FUNCTION_TIMEOUT_MS: '4000',
    KEEP_LAST_N: '3',
    CLEANUP_CRON: 'off',
    FUNCTION_NETWORK: TEST_NETWORK,
  },
  { runner: true },
);
if (!t) process.exit(0);
const tp = t as TestPlatform;
const fn = (tag: string) =>
  makeNodeFunction(`export default async (event, context) => ({ tag: ${JSON.stringify(tag)}, uid: process.getuid(), version: context.version });`);
const repoOf = (id: string, v: number) => `function-${id}-v${v}`;
const imageExists = (tag: string) => docker.getImage(tag).inspect().then(() => true, () => false);

async function builtVersions(api: Client, name: string, n: number) {
  let id = '';
  for (let v = 1; v <= n; v++) {
    const d = await deployAndBuild(api, name, await fn(`${name}-v${v}`), 120_000);
    assert.is(d.built.status, 'active', `${d.built.error}\n${d.built.buildLogs}`);
    id = d.id;
  }
  return id;
}

const dockerSuite = suite('docker driver');

dockerSuite('deploy → image built and pushed → invoke runs it as nobody; rollback switches images', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'imaged', 2);
  const v1 = (await api.get(`/api/functions/${id}/deployments/1`)).body;
  assert.is(v1.imageTag, `${REGISTRY}/function-${id}-v1:latest`);
  assert.ok(await imageExists(v1.imageTag));
  assert.ok((await registry.catalog()).includes(repoOf(id, 1)));
  assert.equal(await registry.tags(repoOf(id, 1)), ['latest']);
  assert.equal(await registry.tags(repoOf(id, 2)), ['latest']);
  assert.match(v1.buildLogs, /function layer sha256:[0-9a-f]{64}/, 'the layers were written and pushed by the runner');

  const live = await api.post(`/api/functions/${id}/invoke`, { x: 1 });
  assert.is(live.status, 200, JSON.stringify(live.body));
  assert.equal(live.body.result, { tag: 'imaged-v2', uid: 65534, version: 2 });
  const rb = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(rb.status, 200);
  const after = await api.post(`/api/functions/${id}/invoke`, {});
  assert.is(after.body.result.tag, 'imaged-v1');
  const canary = await api.post(`/api/functions/${id}/invoke?version=2`, {});
  assert.is(canary.body.result.tag, 'imaged-v2');
});

dockerSuite('an HTTP handler in a container answers on its endpoint: binary in and out, a stream chunk by chunk', async () => {
  const api = await tp.newUser();
  const source = `export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/stream') {
      const enc = new TextEncoder();
      return new Response(new ReadableStream({
        async start(c) {
          c.enqueue(enc.encode('first\\n'));
          await new Promise((r) => setTimeout(r, 400));
          c.enqueue(enc.encode('second ' + Date.now() + '\\n'));
          c.close();
        },
      }));
    }
    const bytes = new Uint8Array(await request.arrayBuffer()).reverse();
    return new Response(bytes, { headers: { 'content-type': 'application/octet-stream', 'x-uid': String(process.getuid()) } });
  },
};`;
  const d = await deployAndBuild(api, 'web', await makeNodeFunction(source), 120_000);
  assert.is(d.built.status, 'active', `${d.built.error}\n${d.built.buildLogs}`);
  await api.request('PATCH', `/api/functions/${d.id}`, { json: { access: 'public' } });
  const url = (await api.get(`/api/functions/${d.id}`)).body.url as string;
  const res = await fetch(`${url}/bytes`, { method: 'POST', body: Buffer.from([1, 2, 3, 255]) });
  assert.is(res.status, 200);
  assert.is(res.headers.get('x-uid'), '65534');
  assert.equal([...Buffer.from(await res.arrayBuffer())], [255, 3, 2, 1]);
  const stream = await fetch(`${url}/stream`);
  const reader = stream.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  const firstAt = Date.now();
  assert.is(first, 'first\n');
  let rest = '';
  for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
  const secondAt = Number(/second (\d+)/.exec(rest)![1]);
  assert.ok(secondAt - firstAt >= 300, `the first chunk came ${secondAt - firstAt} ms before the second was made`);
});

dockerSuite('a configuration change in containers: no docker build, its own image tag, env and network take effect', async () => {
  const api = await tp.newUser();
  const source = `import os from 'node:os';
export default async () => ({ greeting: process.env.GREETING ?? null, interfaces: Object.keys(os.networkInterfaces()).sort(), hostname: os.hostname() });`;
  const d = await deployAndBuild(api, 'netcfg', await makeNodeFunction(source), 120_000);
  assert.is(d.built.status, 'active', `${d.built.error}\n${d.built.buildLogs}`);
  const none = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.equal(none.body.result.interfaces, ['lo'], 'network "none": loopback only');
  assert.is(none.body.result.greeting, null);

  const change = await api.request('PATCH', `/api/functions/${d.id}/config`, { json: { env: { GREETING: 'from config' }, network: 'outbound' } });
  assert.is(change.status, 202, JSON.stringify(change.body));
  const built = await waitForBuild(api, d.id, change.body.version, 120_000);
  assert.is(built.status, 'active', `${built.error}\n${built.buildLogs}`);
  assert.not.match(built.buildLogs, /Step \d|Successfully built|COPY/i, 'no docker build');
  assert.match(built.buildLogs, /tagged .* as /);
  assert.is(built.imageTag, `${REGISTRY}/function-${d.id}-v2:latest`);
  assert.ok(await imageExists(built.imageTag));
  assert.equal(await registry.tags(repoOf(d.id, 2)), ['latest']);

  const out = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(out.body.result.greeting, 'from config');
  assert.ok(out.body.result.interfaces.length > 1, `an outbound instance has a network interface: ${out.body.result.interfaces}`);
  const containers = await docker.listContainers({ filters: { label: [`containerpub.function=${d.id}`, 'containerpub.version=2'] } });
  assert.is(containers.length, 1);
  const info = await docker.getContainer(containers[0]!.Id).inspect();
  assert.equal(Object.keys(info.NetworkSettings.Networks), [TEST_NETWORK]);

  // cleanup keeping only the live version removes version 1's image: version 2's own tag of the
  // same image (and its own registry repository) stay, and it keeps serving from a fresh container
  await tp.invoker.manager.dropFunction(d.id);
  const summary = await runCleanup(tp.platform, tp.driver, { functionName: 'netcfg', keepLastN: 1 });
  assert.is(summary.errors, 0, JSON.stringify(summary));
  const v1 = (await api.get(`/api/functions/${d.id}/deployments/1`)).body;
  assert.is(v1.status, 'archived');
  assert.not.ok(await imageExists(v1.imageTag ?? `${REGISTRY}/function-${d.id}-v1:latest`));
  assert.ok(await imageExists(built.imageTag));
  assert.equal(await registry.tags(repoOf(d.id, 2)), ['latest']);
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).body.result.greeting, 'from config');

  // rollback to version 1 restores it from its archive: its code, its configuration, loopback only
  const rb = await api.post(`/api/functions/${d.id}/rollback`, { version: 1 });
  assert.is(rb.status, 202, JSON.stringify(rb.body));
  await waitForBuild(api, d.id, 1, 120_000);
  await waitFor('version 1 live again', async () => ((await api.get(`/api/functions/${d.id}`)).body.activeVersion === 1 ? true : undefined), { timeoutMs: 30_000 });
  const back = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.equal([back.body.result.greeting, back.body.result.interfaces], [null, ['lo']]);
});

dockerSuite('a failing build keeps v1 live and serving; the engine error is in the logs', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'sturdy', 1);
  const broken = await makeTarGz([{ name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\nCOPY missing-file /x\n` }]);
  const bad = await deployAndBuild(api, 'sturdy', broken, 120_000);
  assert.is(bad.built.status, 'failed');
  assert.match(bad.built.error + bad.built.buildLogs, /missing-file|no such file|not found/i);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'sturdy-v1');
});

dockerSuite("a Dockerfile FROM another tenant's function image fails at once, naming it; nothing is built and v1 stays live", async () => {
  const victim = await tp.newUser();
  const victimId = await builtVersions(victim, 'victim', 1);
  const stolen = `${REGISTRY}/${repoOf(victimId, 1)}:latest`;
  const api = await tp.newUser();
  const id = await builtVersions(api, 'thief', 1);
  const theft = await makeTarGz([{ name: 'Dockerfile', content: `FROM ${BASE_IMAGE} AS ok\nFROM ${stolen}\nCMD ["node", "/app/.containerpub/bootstrap.mjs"]\n` }]);
  const bad = await deployAndBuild(api, 'thief', theft, 60_000);
  assert.is(bad.built.status, 'failed');
  assert.match(bad.built.error ?? '', new RegExp(`line 2: FROM ${stolen.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not an allowed base image`));
  assert.is(bad.built.attempts, 1, 'the function’s own failure: final at the first attempt, no retry');
  assert.not.match(bad.built.buildLogs ?? '', /Step 1\/|Successfully built/, 'refused before the engine built anything');
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
});

dockerSuite('a custom Dockerfile image speaking the protocol', async () => {
  const api = await tp.newUser();
  const archive = await makeTarGz([
    { name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\nCOPY main.js /app/main.js\nCMD ["node", "/app/main.js"]\n` },
    {
      name: 'main.js',
      content: `const http = require('node:http');
let n = 0;
http.createServer((req, res) => {
  if (req.url === '/ready') return res.end('{"ready":true}');
  let body = '';
  req.on('data', (d) => (body += d)).on('end', () => {
    res.end(JSON.stringify({ ok: true, result: { custom: true, got: JSON.parse(body), v: process.env.CONTAINERPUB_VERSION, n: ++n } }));
  });
}).listen(process.env.CONTAINERPUB_SOCKET, () => require('node:fs').chmodSync(process.env.CONTAINERPUB_SOCKET, 0o777));`,
    },
  ]);
  const d = await deployAndBuild(api, 'custom', archive, 120_000);
  assert.is(d.built.status, 'active', d.built.error ?? '');
  assert.match(d.built.buildLogs, /readiness check passed/);
  const res = await api.post(`/api/functions/${d.id}/invoke`, { hi: 'there' });
  assert.equal(res.body.result, { custom: true, got: { hi: 'there' }, v: '1', n: 1 });
  const again = await api.post(`/api/functions/${d.id}/invoke`, { hi: 'again' });
  assert.is(again.body.result.n, 2, 'the same warm container');
});

dockerSuite('a version whose image cannot start never goes live; the previous one keeps serving', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'careful', 1);
  const archive = await makeTarGz([
    { name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\nCOPY main.js /app/main.js\nCMD ["node", "/app/main.js"]\n` },
    { name: 'main.js', content: `console.error('missing configuration'); process.exit(2);` },
  ]);
  const bad = await deployAndBuild(api, 'careful', archive, 120_000);
  assert.is(bad.built.status, 'failed');
  assert.match(bad.built.error, /did not start: .*exited with code 2: missing configuration/);
  assert.match(bad.built.buildLogs, /missing configuration/);
  assert.is((await api.get(`/api/functions/${id}`)).body.activeVersion, 1);
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'careful-v1');
});

dockerSuite('over the timeout: 504, that container is removed, the next call gets a fresh one', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(
    api,
    'stuck',
    await makeNodeFunction("import os from 'node:os'; export default (e) => e.hang ? new Promise(() => setInterval(() => {}, 1000)) : os.hostname();"),
    120_000,
  );
  const before = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(before.status, 200);
  const res = await api.post(`/api/functions/${d.id}/invoke`, { hang: true });
  assert.is(res.status, 504);
  const containerOf = (hostname: string) =>
    docker.listContainers({ all: true, filters: { label: [`containerpub.function=${d.id}`] } }).then((cs) => cs.filter((c) => c.Id.startsWith(hostname)));
  await waitFor('the stuck container to be removed', async () => (await containerOf(before.body.result)).length === 0);
  const after = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(after.status, 200);
  assert.is.not(after.body.result, before.body.result);
});

dockerSuite('SIGTERM of a serving process with running instances leaves no container behind', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'stopped', await fn('x'), 120_000);
  const served = await spawnApi(runnerEnv(tp, { RUNTIME_DRIVER: 'docker', REGISTRY, FUNCTION_BASE_IMAGE: BASE_IMAGE, FUNCTION_MAX_INSTANCES: '2' }));
  const remote = client(served.url, api.token);
  const ownedByIt = async () =>
    (await docker.listContainers({ all: true, filters: { label: [`containerpub.function=${d.id}`] } })).filter((c) =>
      c.Labels['containerpub.owner']?.startsWith(`${os.hostname()}/${served.child.pid}/`),
    );
  try {
    const both = await Promise.all([1, 2].map(() => remote.post(`/api/functions/${d.id}/invoke`, {})));
    for (const r of both) assert.is(r.status, 200, JSON.stringify(r.body));
    assert.ok((await ownedByIt()).length >= 1, 'it runs instances');
  } finally {
    assert.is(await served.stop('SIGTERM'), 0, served.output());
  }
  assert.equal(await ownedByIt(), [], 'every instance container of the stopped process is gone');
});

dockerSuite('containers have no network and a read-only root; a chatty function still answers', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(
    api,
    'boxed',
    await makeNodeFunction(`import os from 'node:os'; import fs from 'node:fs';
export default async () => {
  for (let i = 0; i < 20000; i++) console.log('noise ' + i);
  let writable = true; try { fs.writeFileSync('/app/x', 'x'); } catch { writable = false; }
  return { ifaces: Object.keys(os.networkInterfaces()), writable };
};`),
    120_000,
  );
  const res = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.result, { ifaces: ['lo'], writable: false });
});

dockerSuite('DELETE removes every version image from the engine and the registry', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'erased', 2);
  const tags = [1, 2].map((v) => `${REGISTRY}/function-${id}-v${v}:latest`);
  assert.is((await api.del(`/api/functions/${id}`)).status, 204);
  for (const tag of tags) assert.not.ok(await imageExists(tag));
  for (const v of [1, 2]) assert.equal(await registry.tags(repoOf(id, v)), []);
});

const retention = suite('retention with images');

retention('KEEP_LAST_N=3, 8 versions: v1..v5 images leave the engine and the registry; v1 comes back on rollback', async () => {
  const api = await tp.newUser();
  const id = await builtVersions(api, 'history', 8);
  const summary = await runCleanup(tp.platform, tp.driver, { functionName: 'history' });
  assert.is(summary.errors, 0);
  assert.is(summary.versionsArchived, 5);
  for (let v = 1; v <= 8; v++) {
    const tag = `${REGISTRY}/function-${id}-v${v}:latest`;
    const kept = v >= 6;
    assert.is(await imageExists(tag), kept, `v${v} image in the engine`);
    assert.equal(await registry.tags(repoOf(id, v)), kept ? ['latest'] : [], `v${v} in the registry`);
  }
  const rb = await api.post(`/api/functions/${id}/rollback`, { version: 1 });
  assert.is(rb.status, 202);
  const built = await waitForBuild(api, id, 1, 120_000);
  assert.is(built.status, 'active', built.error ?? '');
  assert.is(built.isActive, true);
  assert.ok(await imageExists(`${REGISTRY}/function-${id}-v1:latest`));
  assert.is((await api.post(`/api/functions/${id}/invoke`, {})).body.result.tag, 'history-v1');
});

retention('an image removed by hand: 503 image_rebuilding, then rebuilt from the archive', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'orphaned', await fn('back'), 120_000);
  const tag = `${REGISTRY}/function-${d.id}-v1:latest`;
  // a warm container would go on serving from the image it holds: start from none
  await waitFor('the pre-warmed instance', () => tp.invoker.manager.list(d.id).some((i) => i.state === 'idle'));
  await tp.invoker.manager.dropFunction(d.id);
  await docker.getImage(tag).remove({ force: true });
  await registry.deleteTag(repoOf(d.id, 1), 'latest');
  const first = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(first.status, 503);
  assert.is(first.body.error.code, 'image_rebuilding');
  const back = await waitFor(
    'the rebuilt image to answer',
    async () => {
      const res = await api.post(`/api/functions/${d.id}/invoke`, {});
      if (res.status !== 200 && res.status !== 503) throw new Error(`unexpected ${res.status}`);
      return res.status === 200 ? res : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  assert.is(back.body.result.tag, 'back');
});

retention.after(async () => {
  await tp.close();
  // after the platform: its containers are gone, so the network can go too
  await docker.getNetwork(TEST_NETWORK).remove().catch(() => {});
});
dockerSuite.run();
retention.run();
