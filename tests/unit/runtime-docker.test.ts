// The docker driver against the real engine and registry: build + push, locked-down invocations
// (no network, nobody, read-only root), timeouts that leave no container, engine errors inside a
// build stream, custom Dockerfile images, pulls, removal from engine and registry.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import Docker from 'dockerode';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DockerDriver, imageTagFor, LABEL_FUNCTION } from '../../shared/runtime/docker-driver.ts';
import { RegistryClient, splitImageTag } from '../../shared/runtime/registry.ts';
import { ArtifactMissingError } from '../../shared/runtime/protocol.ts';
import { BuildError, type ArtifactRef, type BuildInput, type FunctionKind, type InvokeInput } from '../../shared/runtime/types.ts';
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
const driver = new DockerDriver({ docker, registry: REGISTRY, baseImage: BASE_IMAGE, memoryMb: 128, cpus: 1, pidsLimit: 64 });
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

function sourceDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(root, 'src-'));
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

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

function invokeInput(built: ArtifactRef & { deploymentId: string }, event: unknown, timeoutMs = 20_000): InvokeInput {
  return { ...built, requestId: randomUUID(), event, timeoutMs };
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
  'index.mjs': `import fs from 'node:fs';
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
        fetchResult,
        cwd: process.cwd(),
        env: Object.keys(process.env).filter((k) => k.startsWith('CONTAINERPUB_')).sort(),
      };
    };`,
};
let probe: Awaited<ReturnType<typeof build>> | undefined;
const getProbe = async () => (probe ??= await build(probeSource));

// ---------------------------------------------------------------- happy paths

test('imageTagFor: the seed naming, with and without a registry', () => {
  assert.is(imageTagFor('127.0.0.1:5000', 'abc', 3), '127.0.0.1:5000/function-abc-v3:latest');
  assert.is(imageTagFor(undefined, 'abc', 3), 'function-abc-v3:latest');
});

test('build + push a Node function: the image is on the engine and its tag in the registry', async () => {
  const built = await getProbe();
  assert.is(built.imageTag, imageTagFor(REGISTRY, built.functionId, 1));
  assert.ok(built.lines.some((l) => /^Step \d\/3 : COPY \. \/app\/$/.test(l)), built.lines.join('\n'));
  assert.ok(built.lines.some((l) => l.startsWith('pushed ')), built.lines.join('\n'));
  const { repository } = splitImageTag(built.imageTag!);
  assert.equal(await new RegistryClient(REGISTRY).tags(repository), ['latest']);
  const inspect = await docker.getImage(built.imageTag!).inspect();
  assert.is(inspect.Config.Labels[LABEL_FUNCTION], built.functionId);
  assert.is(inspect.Config.Labels['containerpub.runtime'], 'node');
  assert.ok(await driver.hasArtifact(built));
});

test('invoke: result, context, and the sandbox (no network, nobody, read-only root)', async () => {
  const built = await getProbe();
  const input = invokeInput(built, { hello: 'docker' });
  const started = performance.now();
  const out = await driver.invoke(input);
  timed('cold invoke (docker)', performance.now() - started);
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  const r = out.result as Record<string, unknown>;
  assert.equal(r.event, { hello: 'docker' });
  assert.equal(r.context, { functionId: built.functionId, version: 1, deploymentId: built.deploymentId, requestId: input.requestId });
  assert.is(r.uid, 65534);
  assert.is(r.gid, 65534);
  assert.equal(r.interfaces, ['lo']);
  assert.match(String(r.fetchResult), /^failed/);
  assert.is(r.appWrite, 'EROFS');
  assert.is(r.tmpWrite, 'written');
  assert.is(r.cwd, '/app');
  assert.equal(r.env, ['CONTAINERPUB_DEPLOYMENT_ID', 'CONTAINERPUB_FUNCTION_ID', 'CONTAINERPUB_REQUEST_ID', 'CONTAINERPUB_VERSION']);
  assert.match(out.logs, 'a log line');
  assert.equal(await containersOf(built.functionId), [], 'the container is removed');
});

test('cold invokes, several in a row (timing)', async () => {
  const built = await getProbe();
  for (let i = 0; i < 5; i++) {
    const started = performance.now();
    const out = await driver.invoke(invokeInput(built, { mode: 'print-nothing', i }));
    timed('cold invoke (docker)', performance.now() - started);
    assert.ok(out.ok, JSON.stringify(out));
  }
});

test('a function printing 2 MB still returns its result; logs bounded', async () => {
  const built = await getProbe();
  const out = await driver.invoke(invokeInput(built, { mode: 'print' }));
  assert.ok(out.ok, JSON.stringify(out).slice(0, 500));
  if (!out.ok) return;
  assert.is(out.result, 'printed');
  assert.ok(out.logs.length <= 64 * 1024 + 100);
});

// ---------------------------------------------------------------- errors

test('a throwing handler: an error with its message', async () => {
  const built = await getProbe();
  const out = await driver.invoke(invokeInput(built, { mode: 'throw' }));
  assert.not.ok(out.ok);
  if (out.ok) return;
  assert.is(out.kind, 'error');
  assert.is(out.message, 'probe failed on purpose');
});

test('a hung handler times out after 1 s and leaves no container', async () => {
  const built = await getProbe();
  const started = performance.now();
  const out = await driver.invoke(invokeInput(built, { mode: 'hang' }, 1000));
  assert.not.ok(out.ok);
  if (out.ok) return;
  assert.is(out.kind, 'timeout');
  assert.ok(performance.now() - started < 10_000);
  assert.equal(await containersOf(built.functionId), []);
  const byAncestor = await docker.listContainers({ all: true, filters: JSON.stringify({ ancestor: [built.imageTag!] }) });
  assert.equal(byAncestor, []);
});

test('a function over its memory limit is reported as such', async () => {
  const built = await getProbe();
  const small = new DockerDriver({ docker, registry: REGISTRY, baseImage: BASE_IMAGE, memoryMb: 64, cpus: 1, pidsLimit: 64 });
  const out = await small.invoke(invokeInput(built, { mode: 'oom' }));
  await small.close();
  assert.not.ok(out.ok);
  if (out.ok) return;
  assert.is(out.kind, 'error');
  assert.match(out.message, /memory limit of 64 MB/);
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

test('an aborted build throws and leaves no tagged image', async () => {
  const ac = new AbortController();
  const lines: string[] = [];
  const functionId = newFunctionId();
  const input: BuildInput = {
    functionId,
    deploymentId: randomUUID(),
    version: 1,
    sourceDir: sourceDir({ 'index.mjs': 'export default () => 1;' }),
    function: { kind: 'node', entry: 'index.mjs' },
    log: (line) => {
      lines.push(line);
      if (line.startsWith('Step 1/')) ac.abort();
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

// ---------------------------------------------------------------- custom images, pulls, removal

test('a custom Dockerfile image speaking the protocol with its own CMD', async () => {
  const built = await build(
    {
      Dockerfile: `FROM ${BASE_IMAGE}\nCOPY main.js /app/main.js\nCMD ["node", "/app/main.js"]\n`,
      'main.js': `let input = '';
        process.stdin.on('data', (d) => (input += d));
        process.stdin.on('end', () => {
          const event = JSON.parse(input);
          console.log('custom log on stdout');
          console.error('custom log on stderr');
          console.log(JSON.stringify({ custom: true, got: event, version: process.env.CONTAINERPUB_VERSION, uid: process.getuid() }));
        });`,
    },
    { kind: 'dockerfile' },
  );
  const inspect = await docker.getImage(built.imageTag!).inspect();
  assert.is(inspect.Config.Labels[LABEL_FUNCTION], built.functionId);
  assert.is(inspect.Config.Labels['containerpub.runtime'], undefined);
  const out = await driver.invoke(invokeInput(built, { a: 1 }));
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, { custom: true, got: { a: 1 }, version: '1', uid: 65534 });
  assert.match(out.logs, 'custom log on stdout');
  assert.match(out.logs, 'custom log on stderr');
});

test('an image gone from the engine is pulled back from the registry', async () => {
  const built = await build({ 'index.mjs': `export default async () => 'pulled';` });
  const fresh = new DockerDriver({ docker, registry: REGISTRY, baseImage: BASE_IMAGE, memoryMb: 128, cpus: 1, pidsLimit: 64 });
  await docker.getImage(built.imageTag!).remove({ force: true });
  assert.not.ok(await imageExists(built.imageTag!));
  assert.ok(await fresh.hasArtifact(built), 'still in the registry');
  const started = performance.now();
  const out = await fresh.invoke(invokeInput(built, null));
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

test('without a registry: a local tag, no push, removal from the engine only', async () => {
  const local = new DockerDriver({ docker, baseImage: BASE_IMAGE, memoryMb: 128, cpus: 1, pidsLimit: 64 });
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
    const out = await local.invoke({ ...ref, deploymentId: input.deploymentId, requestId: randomUUID(), event: 7, timeoutMs: 20_000 });
    assert.equal(out.ok ? out.result : out, { local: 7 });
    assert.ok(await local.hasArtifact(ref));
    await local.removeArtifact(ref);
    assert.not.ok(await local.hasArtifact(ref));
    assert.equal(await imagesOf(functionId), []);
    await local.invoke({ ...ref, deploymentId: input.deploymentId, requestId: randomUUID(), event: 7, timeoutMs: 20_000 }).then(
      () => assert.unreachable('the image is gone'),
      (err) => assert.instance(err, ArtifactMissingError),
    );
  } finally {
    await local.removeArtifact({ functionId, version: 1, imageTag: `function-${functionId}-v1:latest` }).catch(() => {});
    await local.close();
  }
});

test.run();
