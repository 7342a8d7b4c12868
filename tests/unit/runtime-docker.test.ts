// The docker driver against the real engine and registry: build + push, locked-down instances
// (no network, nobody, read-only root and socket directory), warm reuse, timeouts and crashes that
// leave no container, orphans of a killed platform process, engine errors inside a build stream,
// custom Dockerfile images, pulls, removal from engine and registry.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import Docker from 'dockerode';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DockerDriver, imageTagFor, LABEL_FUNCTION } from '../../shared/runtime/docker-driver.ts';
import { RegistryClient, splitImageTag } from '../../shared/runtime/registry.ts';
import { ArtifactMissingError } from '../../shared/runtime/protocol.ts';
import { InstanceManager, type InstanceTarget, type InvokeOutcome, type PoolSettings } from '../../shared/runtime/pool.ts';
import { BuildError, InfrastructureError, type BuildInput, type FunctionKind } from '../../shared/runtime/types.ts';
import { poolSettings, writeSourceDir } from '../support/process-fixture.ts';
import { dockerAvailable, requireService, waitFor } from '../support/services.ts';

const REGISTRY = process.env.TEST_REGISTRY ?? '127.0.0.1:5000';
const BASE_IMAGE = process.env.TEST_BASE_IMAGE ?? 'containerpub/node-base:20';

const dockerWhy = await dockerAvailable();
if (!requireService('Docker engine', dockerWhy === null, dockerWhy ?? '')) process.exit(0);
const docker = new Docker();
const registryUp = await new RegistryClient(REGISTRY).ping();
if (!requireService(`Docker registry at ${REGISTRY}`, registryUp, 'GET /v2/ did not answer 200')) process.exit(0);
const baseUp = await docker.getImage(BASE_IMAGE).inspect().then(() => true, () => false);
if (!requireService(`base image ${BASE_IMAGE}`, baseUp, 'not on the engine')) process.exit(0);

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-docker-'));
const instanceDir = path.join(root, 'instances');
const newDriver = (opts: { registry?: string } = { registry: REGISTRY }) =>
  new DockerDriver({ docker, registry: opts.registry, baseImage: BASE_IMAGE, instanceDir, cpus: 1, pidsLimit: 64 });
const driver = newDriver();
/** Every function id this file builds, for the final cleanup. */
const functionIds = new Set<string>();
const timings: Record<string, number[]> = {};
const timed = (what: string, ms: number) => (timings[what] ??= []).push(Math.round(ms));

test.after(async () => {
  for (const functionId of functionIds) {
    await driver.removeArtifact({ functionId, version: 1, imageTag: imageTagFor(REGISTRY, functionId, 1) }).catch(() => {});
  }
  await driver.close();
  fs.rmSync(root, { recursive: true, force: true });
  for (const [what, values] of Object.entries(timings)) {
    const sorted = [...values].sort((a, b) => a - b);
    console.log(`timing ${what}: ${sorted.join(', ')} ms (median ${sorted[Math.floor(sorted.length / 2)]})`);
  }
});

const sourceDir = (files: Record<string, string>) => writeSourceDir(root, files);

/** A fresh function id: test images never collide with anyone else's. */
const newFunctionId = () => {
  const id = `test-${randomBytes(6).toString('hex')}`;
  functionIds.add(id);
  return id;
};

async function build(files: Record<string, string>, fn: FunctionKind = { kind: 'node', entry: 'index.mjs' }, functionId = newFunctionId()) {
  const lines: string[] = [];
  const input: BuildInput = {
    functionId,
    deploymentId: randomUUID(),
    version: 1,
    sourceDir: sourceDir(files),
    function: fn,
    log: (line) => lines.push(line),
    signal: new AbortController().signal,
  };
  const started = performance.now();
  const result = await driver.build(input);
  timed(`build+push (${fn.kind})`, performance.now() - started);
  return { ...input, imageTag: result.imageTag, lines };
}

/** One invocation on a pool of its own (a cold container), torn down after. */
async function invokeOnce(
  built: InstanceTarget,
  event: unknown,
  over: Partial<PoolSettings> = {},
  d: DockerDriver = driver,
): Promise<InvokeOutcome & { requestId: string }> {
  const manager = new InstanceManager(d.instances, { maxTotal: 4, settings: () => poolSettings({ timeoutMs: 20_000, ...over }) });
  const requestId = randomUUID();
  try {
    return { ...(await manager.invoke(built, { requestId, body: JSON.stringify(event ?? null) })), requestId };
  } finally {
    await manager.close(0);
  }
}

async function containersOf(functionId: string) {
  return docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${LABEL_FUNCTION}=${functionId}`] }) });
}

const imageExists = (tag: string) => docker.getImage(tag).inspect().then(() => true, () => false);

/** Every image (tagged or not) labelled as this function's. */
async function imagesOf(functionId: string) {
  return docker.listImages({ all: true, filters: JSON.stringify({ label: [`${LABEL_FUNCTION}=${functionId}`] }) });
}

// One Node function reused by several tests: it reports what its sandbox looks like.
const probeSource = {
  'package.json': JSON.stringify({ name: 'probe', type: 'module' }),
  'index.mjs': `import { spawn } from 'node:child_process';
import fs from 'node:fs';
    import os from 'node:os';
    export default async (event, context) => {
      if (event?.mode === 'throw') throw new Error('probe failed on purpose');
      if (event?.mode === 'hang') return new Promise(() => {});
      if (event?.mode === 'print') {
        const line = 'z'.repeat(1023);
        for (let i = 0; i < 2 * 1024; i++) console.log(line);
        return 'printed';
      }
      if (event?.mode === 'oom') {
        const keep = [];
        for (;;) keep.push(Buffer.alloc(16 * 1024 * 1024, 1));
      }
      let appWrite = 'written';
      try { fs.writeFileSync('/app/x', 'x'); } catch (err) { appWrite = err.code; }
      let tmpWrite = 'written';
      try { fs.writeFileSync('/tmp/x', 'x'); } catch (err) { tmpWrite = err.code; }
      let socketDirWrite = 'written';
      try { fs.writeFileSync('/run/containerpub/x', 'x'); } catch (err) { socketDirWrite = err.code; }
      let fetchResult = 'reached';
      try { await fetch('http://1.1.1.1', { signal: AbortSignal.timeout(3000) }); } catch (err) { fetchResult = 'failed: ' + (err.cause?.code ?? err.name); }
      console.log('a log line');
      return {
        event,
        context,
        uid: process.getuid(),
        gid: process.getgid(),
        interfaces: Object.keys(os.networkInterfaces()),
        appWrite,
        tmpWrite,
        socketDirWrite,
        fetchResult,
        cwd: process.cwd(),
        env: Object.keys(process.env).filter((k) => k.startsWith('CONTAINERPUB_')).sort(),
      };
    };`,
};
/** A custom image's server: the documented protocol, by hand (HTTP on the socket, /ready, /invoke). */
const CUSTOM_SERVER = `const http = require('node:http');
const server = http.createServer((req, res) => {
  if (req.url === '/ready') { res.end('{"ready":true}'); return; }
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    console.log('custom log');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true, logs: 'custom log\\n', result: {
      custom: true, got: JSON.parse(body), version: process.env.CONTAINERPUB_VERSION, uid: process.getuid(),
      requestId: req.headers['x-containerpub-request-id'] } }));
  });
});
server.listen(process.env.CONTAINERPUB_SOCKET, () => require('node:fs').chmodSync(process.env.CONTAINERPUB_SOCKET, 0o777));`;

let probe: Awaited<ReturnType<typeof build>> | undefined;
const getProbe = async () => (probe ??= await build(probeSource));

// ---------------------------------------------------------------- happy paths

test('imageTagFor: the seed naming, with and without a registry', () => {
  assert.is(imageTagFor('127.0.0.1:5000', 'abc', 3), '127.0.0.1:5000/function-abc-v3:latest');
  assert.is(imageTagFor(undefined, 'abc', 3), 'function-abc-v3:latest');
});

test('build + push a Node function: no docker build, layers and config straight to the registry', async () => {
  const built = await getProbe();
  assert.is(built.imageTag, imageTagFor(REGISTRY, built.functionId, 1));
  const log = built.lines.join('\n');
  assert.not.match(log, /^Step \d/m, 'no docker build');
  assert.match(log, /function layer sha256:[0-9a-f]{64} \(/);
  assert.match(log, /base layer sha256:[0-9a-f]{12} \([^)]*\): (mounted from|already there)/, 'the base layers are mounted, never uploaded');
  assert.match(log, /function layer sha256:[0-9a-f]{12} \([^)]*\): uploaded/);
  assert.ok(built.lines.some((l) => l.startsWith('pushed ')), log);
  const { repository } = splitImageTag(built.imageTag!);
  const registry = new RegistryClient(REGISTRY);
  assert.equal(await registry.tags(repository), ['latest']);
  const manifest = JSON.parse((await registry.getManifest(repository, 'latest'))!.bytes.toString());
  assert.is(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  const config = JSON.parse((await registry.getBlob(repository, manifest.config.digest)).toString());
  assert.is(config.config.Labels[LABEL_FUNCTION], built.functionId);
  assert.is(config.config.Labels['containerpub.runtime'], 'node');
  assert.is(config.config.User, '65534:65534');
  assert.equal(config.config.Cmd, ['node', '/app/.containerpub/bootstrap.mjs']);
  assert.is(config.rootfs.diff_ids.length, manifest.layers.length);
  assert.ok(await driver.hasArtifact(built));
});

test('an instance: result, context, and the sandbox (no network, nobody, read-only root and socket dir)', async () => {
  const built = await getProbe();
  const started = performance.now();
  const out = await invokeOnce(built, { hello: 'docker' });
  timed('cold invoke (docker)', performance.now() - started);
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  const r = out.result as Record<string, unknown>;
  assert.equal(r.event, { hello: 'docker' });
  assert.equal(r.context, {
    functionId: built.functionId,
    version: 1,
    deploymentId: built.deploymentId,
    instanceId: out.instanceId,
    requestId: out.requestId,
  });
  assert.is(r.uid, 65534);
  assert.is(r.gid, 65534);
  assert.equal(r.interfaces, ['lo']);
  assert.match(String(r.fetchResult), /^failed/);
  assert.is(r.appWrite, 'EROFS');
  assert.is(r.tmpWrite, 'written');
  assert.is(r.socketDirWrite, 'EACCES', 'the socket directory is locked once the instance listens');
  assert.is(r.cwd, '/app');
  assert.equal(r.env, [
    'CONTAINERPUB_DEPLOYMENT_ID',
    'CONTAINERPUB_FUNCTION_ID',
    'CONTAINERPUB_INSTANCE_ID',
    'CONTAINERPUB_SOCKET',
    'CONTAINERPUB_VERSION',
  ]);
  assert.match(out.logs, 'a log line');
  assert.equal(await containersOf(built.functionId), [], 'the container is removed with its pool');
});

test('warm: one container serves many invocations; its limits are the sandbox\'s', async () => {
  const built = await getProbe();
  const manager = new InstanceManager(driver.instances, { maxTotal: 4, settings: () => poolSettings({ timeoutMs: 20_000 }) });
  try {
    const ids = new Set<string | null>();
    for (let i = 0; i < 5; i++) {
      const started = performance.now();
      const out = await manager.invoke(built, { requestId: randomUUID(), body: JSON.stringify({ mode: 'quick', i }) });
      timed(i === 0 ? 'cold invoke (docker)' : 'warm invoke (docker)', performance.now() - started);
      assert.ok(out.ok, JSON.stringify(out));
      assert.is(out.cold, i === 0);
      ids.add(out.instanceId);
    }
    assert.is(ids.size, 1);
    const [c] = await containersOf(built.functionId);
    assert.ok(c, 'one container runs');
    const info = await docker.getContainer(c!.Id).inspect();
    assert.is(info.HostConfig.NetworkMode, 'none');
    assert.is(info.HostConfig.ReadonlyRootfs, true);
    assert.equal(info.HostConfig.CapDrop, ['ALL']);
    assert.equal(info.HostConfig.SecurityOpt, ['no-new-privileges']);
    assert.is(info.HostConfig.Memory, 128 * 1024 * 1024);
    assert.is(info.HostConfig.PidsLimit, 64);
    assert.is(info.Config.User, '65534:65534');
    assert.equal(info.HostConfig.LogConfig, { Type: 'json-file', Config: { 'max-file': '1', 'max-size': '1m' } });
  } finally {
    await manager.close(0);
  }
  assert.equal(await containersOf(built.functionId), [], 'close removes the container');
});

test('a function printing 2 MB still returns its result; logs bounded', async () => {
  const built = await getProbe();
  const out = await invokeOnce(built, { mode: 'print' });
  assert.ok(out.ok, JSON.stringify(out).slice(0, 500));
  if (!out.ok) return;
  assert.is(out.result, 'printed');
  assert.ok(out.logs.length <= 64 * 1024 + 100);
});

// ---------------------------------------------------------------- errors

test('a throwing handler: an error with its message', async () => {
  const built = await getProbe();
  const out = await invokeOnce(built, { mode: 'throw' });
  assert.ok(!out.ok && out.kind === 'error', JSON.stringify(out));
  if (!out.ok) assert.is(out.message, 'probe failed on purpose');
});

test('a hung handler times out after 1 s and its container is removed', async () => {
  const built = await getProbe();
  const manager = new InstanceManager(driver.instances, { maxTotal: 4, settings: () => poolSettings({ timeoutMs: 1000 }) });
  try {
    const started = performance.now();
    const out = await manager.invoke(built, { requestId: randomUUID(), body: '{"mode":"hang"}' });
    assert.ok(!out.ok && out.kind === 'timeout', JSON.stringify(out));
    assert.ok(performance.now() - started < 10_000);
    await waitFor('the stuck container to be removed', async () => (await containersOf(built.functionId)).length === 0, { timeoutMs: 10_000 });
    const next = await manager.invoke(built, { requestId: randomUUID(), body: '{}' });
    assert.ok(next.ok, 'a fresh instance answers the next call');
  } finally {
    await manager.close(0);
  }
  const byAncestor = await docker.listContainers({ all: true, filters: JSON.stringify({ ancestor: [built.imageTag!] }) });
  assert.equal(byAncestor, []);
});

test('an instance over its memory limit crashes with a message that says so', async () => {
  const built = await getProbe();
  const out = await invokeOnce(built, { mode: 'oom' }, { memoryMb: 64 });
  assert.ok(!out.ok && out.kind === 'crashed', JSON.stringify(out).slice(0, 500));
  if (!out.ok) assert.match(out.message, /ran out of memory \(limit 64 MB\)/);
});

test('orphans: a SIGKILLed platform process leaves containers that the next start removes', async () => {
  const built = await getProbe();
  const script = path.join(root, `orphan-${randomUUID()}.mts`);
  const repo = path.resolve('.');
  fs.writeFileSync(
    script,
    `import { DockerDriver } from '${repo}/shared/runtime/docker-driver.ts';
import { InstanceManager } from '${repo}/shared/runtime/pool.ts';
const driver = new DockerDriver({ registry: ${JSON.stringify(REGISTRY)}, baseImage: ${JSON.stringify(BASE_IMAGE)}, instanceDir: ${JSON.stringify(instanceDir)}, cpus: 1, pidsLimit: 64 });
const m = new InstanceManager(driver.instances, { maxTotal: 4, settings: () => (${JSON.stringify(poolSettings({ timeoutMs: 20_000 }))}) });
const out = await m.invoke(${JSON.stringify({ functionId: built.functionId, deploymentId: built.deploymentId, version: 1, imageTag: built.imageTag })}, { requestId: 'r', body: '{}' });
console.log(JSON.stringify({ ok: out.ok, instanceId: out.instanceId }));
setInterval(() => {}, 1000);`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
  let printed = '';
  child.stdout.on('data', (d) => (printed += d));
  let exited = false;
  child.once('exit', () => (exited = true));
  const answer = await waitFor(
    'the other process to serve an invocation',
    () => {
      if (exited) throw new Error('the other process died');
      return printed.includes('\n') ? JSON.parse(printed) : undefined;
    },
    { timeoutMs: 60_000 },
  );
  assert.ok(answer.ok);
  assert.is((await containersOf(built.functionId)).length, 1);
  child.kill('SIGKILL');
  await waitFor('the owner to die', () => exited);
  assert.is((await containersOf(built.functionId)).length, 1, 'a container outlives a SIGKILLed owner');
  const swept = await newDriver().instances.sweepOrphans();
  assert.is(swept, 1);
  assert.equal(await containersOf(built.functionId), []);
  assert.not.ok(fs.readdirSync(instanceDir).includes(answer.instanceId), 'its socket directory is gone too');
});

test('a build whose COPY fails is a BuildError with the engine message, and leaves no image', async () => {
  const files = { Dockerfile: `FROM ${BASE_IMAGE}\nCOPY missing-file /x\n`, 'present.txt': 'hi' };
  const functionId = newFunctionId();
  try {
    await build(files, { kind: 'dockerfile' }, functionId);
    assert.unreachable('the build should fail');
  } catch (err) {
    assert.instance(err, BuildError, String(err));
    assert.match((err as Error).message, /COPY failed/);
    assert.match((err as Error).message, /missing-file/);
  }
  assert.not.ok(await imageExists(imageTagFor(REGISTRY, functionId, 1)));
});

for (const kind of ['node', 'dockerfile'] as const) {
  test(`an aborted build (${kind}) throws and leaves no tagged image`, async () => {
    const ac = new AbortController();
    const lines: string[] = [];
    const functionId = newFunctionId();
    const input: BuildInput = {
      functionId,
      deploymentId: randomUUID(),
      version: 1,
      sourceDir: sourceDir(
        kind === 'node'
          ? { 'index.mjs': 'export default () => 1;' }
          : { Dockerfile: `FROM ${BASE_IMAGE}\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n`, 'a.txt': randomUUID(), 'b.txt': 'b' },
      ),
      function: kind === 'node' ? { kind: 'node', entry: 'index.mjs' } : { kind: 'dockerfile' },
      log: (line) => {
        lines.push(line);
        // the node build: before its layers are pushed; the Dockerfile build: inside the engine's build
        if (line.startsWith(kind === 'node' ? 'building ' : 'Step 1/')) ac.abort();
      },
      signal: ac.signal,
    };
    await driver.build(input).then(
      () => assert.unreachable('should abort'),
      (err) => {
        assert.instance(err, BuildError);
        assert.match((err as Error).message, /aborted/);
      },
    );
    const tag = imageTagFor(REGISTRY, functionId, 1);
    assert.not.ok(await imageExists(tag));
    assert.equal(await new RegistryClient(REGISTRY).tags(splitImageTag(tag).repository), [], 'nothing was pushed');
    // the engine finishes the step it was in after the cancel, and keeps it as an untagged image:
    // removing the version's artifact also removes those (repeated until the engine is done)
    await waitFor(
      'the aborted build to leave no image',
      async () => {
        await driver.removeArtifact({ functionId, version: 1, imageTag: tag });
        return (await imagesOf(functionId)).length === 0;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
  });
}

// ---------------------------------------------------------------- custom images, pulls, removal

test('a Dockerfile FROM an image outside ALLOWED_BASE_IMAGES fails before anything is built, naming it', async () => {
  const functionId = newFunctionId();
  const err = await build({ Dockerfile: `FROM ${BASE_IMAGE}\nCOPY a /a\nFROM someone-else/private:1\n`, a: 'a' }, { kind: 'dockerfile' }, functionId).then(
    () => assert.unreachable('refused'),
    (e: Error) => e,
  );
  assert.instance(err, BuildError);
  assert.match((err as Error).message, /line 3: FROM someone-else\/private:1 is not an allowed base image/);
  assert.equal(await imagesOf(functionId), []);
});

test('a Dockerfile build runs within the build memory limit: a RUN step allocating without bound is killed', async () => {
  const limited = new DockerDriver({ docker, registry: REGISTRY, baseImage: BASE_IMAGE, instanceDir, cpus: 1, pidsLimit: 64, buildMemoryMb: 96, buildCpus: 0.5 });
  const functionId = newFunctionId();
  const lines: string[] = [];
  const input: BuildInput = {
    functionId,
    deploymentId: randomUUID(),
    version: 1,
    // exec form: the base image has no shell
    sourceDir: sourceDir({ Dockerfile: `FROM ${BASE_IMAGE}\nRUN ["node", "-e", "const a = []; for (;;) a.push(Buffer.alloc(16 << 20, 1))"]\n` }),
    function: { kind: 'dockerfile' },
    log: (line) => lines.push(line),
    signal: new AbortController().signal,
  };
  const started = performance.now();
  const err = await limited.build(input).then(
    () => assert.unreachable('the step is killed'),
    (e: Error) => e,
  );
  assert.instance(err, BuildError);
  assert.match((err as Error).message, /returned a non-zero code: 137/, 'killed by the memory limit');
  assert.ok(performance.now() - started < 30_000);
  assert.not.ok(await imageExists(imageTagFor(REGISTRY, functionId, 1)));
  await limited.close();
});

test('a custom Dockerfile image speaking the protocol with its own CMD', async () => {
  const built = await build(
    {
      Dockerfile: `FROM ${BASE_IMAGE}\nCOPY main.js /app/main.js\nCMD ["node", "/app/main.js"]\n`,
      // a nonce: never a build-cache hit on layers an earlier run (or a parallel suite) is removing
      'main.js': `${CUSTOM_SERVER}\n// ${randomUUID()}`,
    },
    { kind: 'dockerfile' },
  );
  const inspect = await docker.getImage(built.imageTag!).inspect();
  assert.is(inspect.Config.Labels[LABEL_FUNCTION], built.functionId);
  assert.is(inspect.Config.Labels['containerpub.runtime'], undefined);
  const out = await invokeOnce(built, { a: 1 });
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, { custom: true, got: { a: 1 }, version: '1', uid: 65534, requestId: out.requestId });
  assert.match(out.logs, 'custom log');
});

test('an image gone from the engine is pulled back from the registry', async () => {
  const built = await build({ 'index.mjs': `export default async () => 'pulled';` });
  const fresh = newDriver();
  // the build pushed it without the engine; a start by this process may have pulled it
  await docker.getImage(built.imageTag!).remove({ force: true }).catch(() => {});
  assert.not.ok(await imageExists(built.imageTag!));
  assert.ok(await fresh.hasArtifact(built), 'still in the registry');
  const started = performance.now();
  const out = await invokeOnce(built, null, {}, fresh);
  timed('invoke with pull (docker)', performance.now() - started);
  await fresh.close();
  assert.ok(out.ok, JSON.stringify(out));
  if (out.ok) assert.is(out.result, 'pulled');
  assert.ok(await imageExists(built.imageTag!));
});

test('removeArtifact removes the local image and the registry tag; idempotent', async () => {
  const built = await build({ 'index.mjs': `export default async () => 1;` });
  const { repository } = splitImageTag(built.imageTag!);
  const registry = new RegistryClient(REGISTRY);
  assert.equal(await registry.tags(repository), ['latest']);
  await driver.removeArtifact(built);
  assert.not.ok(await imageExists(built.imageTag!));
  assert.equal(await imagesOf(built.functionId), [], 'no layer of it is left either');
  assert.equal(await registry.tags(repository), []);
  assert.not.ok(await driver.hasArtifact(built));
  await driver.removeArtifact(built);
});

test('an image removed while an instance still runs on it goes once that instance stops', async () => {
  const built = await build({ 'index.mjs': `export default async () => 'still running';` });
  const manager = new InstanceManager(driver.instances, { maxTotal: 4, settings: () => poolSettings({ timeoutMs: 20_000 }) });
  try {
    assert.ok((await manager.invoke(built, { requestId: randomUUID(), body: '{}' })).ok);
    await driver.removeArtifact(built); // retention or deletion, while the instance is warm
    assert.not.ok(await imageExists(built.imageTag!), 'the tag is gone');
    assert.ok((await imagesOf(built.functionId)).length > 0, 'the engine keeps the image for the running container');
    const again = await manager.invoke(built, { requestId: randomUUID(), body: '{}' });
    assert.equal(again.ok ? again.result : again, 'still running', 'the warm instance is not disturbed');
  } finally {
    await manager.close(0);
  }
  assert.equal(await imagesOf(built.functionId), [], 'no untagged image is left behind');
});

test('a registry that is down is an outage (InfrastructureError), not a failed build; REGISTRY_API_URL is how the runner reaches the registry', async () => {
  const closed = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
  // the tags name a registry engines reach; the runner's own calls go to REGISTRY_API_URL
  const down = new DockerDriver({ docker, registry: REGISTRY, registryApiUrl: `http://127.0.0.1:${closed}`, baseImage: BASE_IMAGE, instanceDir, cpus: 1, pidsLimit: 64, ioTimeoutMs: 2000 });
  const functionId = newFunctionId();
  const input: BuildInput = {
    functionId,
    deploymentId: randomUUID(),
    version: 1,
    sourceDir: sourceDir({ 'index.mjs': 'export default async () => 1;' }),
    function: { kind: 'node', entry: 'index.mjs' },
    log: () => {},
    signal: new AbortController().signal,
  };
  const err = await down.build(input).then(
    () => assert.unreachable('nothing answers there'),
    (e: Error) => e,
  );
  assert.instance(err, InfrastructureError);
  assert.is((err as InfrastructureError).service, 'registry');
  assert.match((err as Error).message, new RegExp(`registry http://127.0.0.1:${closed}.*ECONNREFUSED`));
  await down.close();

  // the same through a different name of the same registry: the tag keeps REGISTRY's name
  const viaApiUrl = new DockerDriver({ docker, registry: REGISTRY, registryApiUrl: `http://localhost:${REGISTRY.split(':')[1]}`, baseImage: BASE_IMAGE, instanceDir, cpus: 1, pidsLimit: 64 });
  const { imageTag } = await viaApiUrl.build({ ...input, deploymentId: randomUUID() });
  assert.is(imageTag, imageTagFor(REGISTRY, functionId, 1));
  assert.equal(await new RegistryClient(REGISTRY).tags(splitImageTag(imageTag!).repository), ['latest']);
  await viaApiUrl.close();
});

test('without a registry: a local tag, no push, removal from the engine only', async () => {
  const local = newDriver({});
  const functionId = newFunctionId();
  const lines: string[] = [];
  const input: BuildInput = {
    functionId,
    deploymentId: randomUUID(),
    version: 1,
    sourceDir: sourceDir({ 'index.mjs': `export default async (e) => ({ local: e });` }),
    function: { kind: 'node', entry: 'index.mjs' },
    log: (line) => lines.push(line),
    signal: new AbortController().signal,
  };
  try {
    const { imageTag } = await local.build(input);
    assert.is(imageTag, `function-${functionId}-v1:latest`);
    assert.not.ok(lines.some((l) => l.startsWith('pushed')));
    const ref = { functionId, version: 1, imageTag };
    const out = await invokeOnce({ ...ref, deploymentId: input.deploymentId }, 7, {}, local);
    assert.equal(out.ok ? out.result : out, { local: 7 });
    assert.ok(await local.hasArtifact(ref));
    await local.removeArtifact(ref);
    assert.not.ok(await local.hasArtifact(ref));
    assert.equal(await imagesOf(functionId), []);
    await invokeOnce({ ...ref, deploymentId: input.deploymentId }, 7, {}, local).then(
      () => assert.unreachable('the image is gone'),
      (err) => assert.instance(err, ArtifactMissingError),
    );
  } finally {
    await local.removeArtifact({ functionId, version: 1, imageTag: `function-${functionId}-v1:latest` }).catch(() => {});
    await local.close();
  }
});

test.run();
