// The process driver end to end (build → instance → invocations → removal) against real child
// processes, and the docker progress-stream parsing (pure: no engine).
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PROCESS_DRIVER_WARNING, ProcessDriver } from '../../shared/runtime/process-driver.ts';
import { TailBuffer, lastLine } from '../../shared/runtime/output.ts';
import { scanDockerEvents } from '../../shared/runtime/docker-stream.ts';
import { ArtifactMissingError } from '../../shared/runtime/protocol.ts';
import { InstanceManager, type InvokeOutcome, type PoolSettings } from '../../shared/runtime/pool.ts';
import { BuildError, type BuildInput, type InstanceSpec } from '../../shared/runtime/types.ts';
import { alive, poolSettings, processFixture } from '../support/process-fixture.ts';
import { waitFor } from '../support/services.ts';

const warnings: string[] = [];
const fx = processFixture({ info() {}, warn: (msg: string) => warnings.push(msg) });
const { root, artifactsDir, instanceDir, driver, sourceDir, build } = fx;
const settings = poolSettings;

test.after(() => fx.cleanup());

type Built = { functionId: string; deploymentId: string; version: number };

const spec = (built: Built): InstanceSpec => ({ ...built, imageTag: null, instanceId: `i-${randomUUID().slice(0, 12)}`, memoryMb: 128 });

/** One invocation on a pool of its own, torn down after. */
async function invokeOnce(built: Built, event: unknown, over: Partial<PoolSettings> = {}): Promise<InvokeOutcome & { requestId: string }> {
  const manager = new InstanceManager(driver.instances, { maxTotal: 8, settings: () => settings(over) });
  const requestId = randomUUID();
  try {
    const out = await manager.invoke({ ...built, imageTag: null }, { requestId, body: JSON.stringify(event ?? null) });
    return { ...out, requestId };
  } finally {
    await manager.close(0);
  }
}

// ---------------------------------------------------------------- happy paths

test('the driver says it isolates nothing', () => {
  assert.ok(warnings.includes(PROCESS_DRIVER_WARNING));
  assert.match(PROCESS_DRIVER_WARNING, /no filesystem, network/);
  assert.match(driver.describe(), /development/);
});

test('build then invoke an ESM handler: result and context', async () => {
  const built = await build({
    'package.json': JSON.stringify({ name: 'fn', type: 'module' }),
    'index.mjs': `export default async (event, context) => ({ echo: event, context, cwd: process.cwd() });`,
  });
  assert.equal(built.result, { imageTag: null });
  assert.ok(built.lines.length > 0, 'build lines are logged');
  const dir = path.join(artifactsDir, built.functionId, 'v1');
  assert.ok(fs.existsSync(path.join(dir, '.containerpub', 'bootstrap.mjs')));
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, '.containerpub', 'entry.json'), 'utf8')), { entry: 'index.mjs' });
  assert.ok(await driver.hasArtifact({ ...built, imageTag: null }));
  assert.not.ok(fs.readdirSync(path.join(artifactsDir, built.functionId)).some((n) => n.includes('tmp')), 'no temp dir left');

  const out = await invokeOnce(built, { hello: 'world', n: [1, 2] });
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, {
    echo: { hello: 'world', n: [1, 2] },
    context: {
      functionId: built.functionId,
      version: 1,
      deploymentId: built.deploymentId,
      instanceId: out.instanceId,
      requestId: out.requestId,
    },
    cwd: fs.realpathSync(dir),
  });
  assert.ok(out.cold, 'the first invocation waited for its instance to start');
  assert.type(out.durationMs, 'number');
  assert.equal(fs.readdirSync(instanceDir), [], 'the instance directory is removed with the instance');
});

test('prints never corrupt the result, and are the invocation\'s logs', async () => {
  const built = await build({
    'index.mjs': `export default async () => {
      console.log('{"fake": "result"}');
      process.stdout.write('written to stdout\\n');
      console.error('to stderr');
      process.stdout.write('no newline at the end');
      return { real: true };
    };`,
  });
  const out = await invokeOnce(built, null);
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, { real: true });
  assert.is(out.logs, '{"fake": "result"}\nwritten to stdout\nto stderr\nno newline at the end');
});

test('a function printing 5 MB still returns its result; logs are bounded', async () => {
  const built = await build({
    'index.mjs': `export default async () => {
      const line = 'x'.repeat(1023);
      for (let i = 0; i < 5 * 1024; i++) console.log(line);
      console.log('the end of the logs');
      return { big: 'x'.repeat(1024 * 1024) };
    };`,
  });
  const out = await invokeOnce(built, null);
  assert.ok(out.ok, out.ok ? '' : out.message);
  if (!out.ok) return;
  assert.is((out.result as { big: string }).big.length, 1024 * 1024);
  assert.ok(out.logs.length <= 64 * 1024 + 100, `logs are ${out.logs.length} bytes`);
  assert.match(out.logs, /^\[\d+ characters of earlier output dropped\]/);
  assert.match(out.logs, /the end of the logs\n$/);
});

test('a result over 8 MiB is refused with a clear message', async () => {
  const built = await build({ 'index.mjs': `export default async () => 'x'.repeat(9 * 1024 * 1024);` });
  const out = await invokeOnce(built, null);
  assert.ok(!out.ok && out.kind === 'error' && /larger than/.test(out.message), JSON.stringify(out).slice(0, 300));
});

test('a CommonJS handler (module.exports = async fn), and a CJS exports.handler', async () => {
  const built = await build(
    {
      'package.json': JSON.stringify({ name: 'fn' }),
      'lib/helper.js': `module.exports = (n) => n * 2;`,
      'index.js': `const double = require('./lib/helper');
        module.exports = async (event, context) => ({ doubled: double(event.n), version: context.version, cjs: typeof require });`,
    },
    { kind: 'node', entry: 'index.js' },
  );
  const out = await invokeOnce(built, { n: 21 });
  assert.ok(out.ok, JSON.stringify(out));
  if (out.ok) assert.equal(out.result, { doubled: 42, version: 1, cjs: 'function' });

  const named = await build({ 'handler.cjs': `exports.handler = async () => 'named';` }, { kind: 'node', entry: 'handler.cjs' });
  const out2 = await invokeOnce(named, null);
  assert.ok(out2.ok, JSON.stringify(out2));
  if (out2.ok) assert.is(out2.result, 'named');
});

test('undefined result is null; the event travels as JSON', async () => {
  const built = await build({ 'index.mjs': `export async function handler(event) { if (event === null) return undefined; return 1; }` });
  const out = await invokeOnce(built, null);
  assert.ok(out.ok, JSON.stringify(out));
  if (out.ok) assert.is(out.result, null);
});

test('a second build of a built version (a late runner, a retry) leaves the live files alone', async () => {
  const first = await build({ 'index.mjs': `import fs from 'node:fs'; export default async () => ({ tag: 'first', cwd: fs.realpathSync('.') });` });
  const manager = new InstanceManager(driver.instances, { maxTotal: 4, settings: () => settings() });
  try {
    const target = { ...first, imageTag: null };
    const before = await manager.invoke(target, { requestId: 'r1', body: '{}' });
    assert.ok(before.ok, JSON.stringify(before));
    const lines: string[] = [];
    // the same version built again while an instance runs from its directory
    await driver.build({ ...first, sourceDir: sourceDir({ 'index.mjs': `export default async () => 'second';` }), log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => /already complete/.test(l)), lines.join('\n'));
    const after = await manager.invoke(target, { requestId: 'r2', body: '{}' });
    assert.equal(after.ok ? after.result : after, before.ok ? before.result : null, 'the running instance still has its files');
    assert.equal(fs.readdirSync(path.join(artifactsDir, first.functionId)), ['v1'], 'no temporary directory left');
  } finally {
    await manager.close(0);
  }
  const fresh = await invokeOnce(first, null);
  assert.is(fresh.ok ? (fresh.result as { tag: string }).tag : fresh, 'first', 'the version keeps its first, verified files');
});

test('an incomplete leftover directory of a version is replaced by the next build', async () => {
  const first = await build({ 'index.mjs': `export default async () => 'first';` });
  const dir = path.join(artifactsDir, first.functionId, 'v1');
  fs.rmSync(path.join(dir, '.containerpub'), { recursive: true, force: true }); // half gone
  await driver.build({ ...first, sourceDir: sourceDir({ 'index.mjs': `export default async () => 'second';` }) });
  const out = await invokeOnce(first, null);
  assert.equal(out.ok ? out.result : out, 'second');
  assert.equal(fs.readdirSync(path.join(artifactsDir, first.functionId)), ['v1']);
});

// ---------------------------------------------------------------- errors

test('a throwing handler: an error with its message, the stack in its logs; the instance lives on', async () => {
  const built = await build({
    'index.mjs': `let n = 0; export default async () => { n++; console.log('before ' + n); if (n === 1) throw new Error('boom: bad input'); return n; };`,
  });
  const manager = new InstanceManager(driver.instances, { maxTotal: 8, settings: () => settings() });
  try {
    const target = { ...built, imageTag: null };
    const out = await manager.invoke(target, { requestId: 'r1', body: '{}' });
    assert.not.ok(out.ok);
    if (out.ok) return;
    assert.is(out.kind, 'error');
    assert.is(out.message, 'boom: bad input');
    assert.match(out.logs, 'before 1');
    assert.match(out.logs, /at .*index\.mjs/);
    const next = await manager.invoke(target, { requestId: 'r2', body: '{}' });
    assert.equal(next.ok ? next.result : next, 2, 'same instance, module state kept');
    assert.is(next.instanceId, out.instanceId);
  } finally {
    await manager.close(0);
  }
});

test('a module that exports no function, or throws at import: the instance does not start', async () => {
  const noFn = await build({ 'index.mjs': `export const value = 1;` });
  const out = await invokeOnce(noFn, {});
  assert.ok(!out.ok && out.kind === 'crashed', JSON.stringify(out));
  if (!out.ok) assert.match(out.message, /did not start.*does not export a handler/);

  const throws = await build({ 'index.mjs': `console.log('loading'); throw new Error('broken at import');` });
  const out2 = await invokeOnce(throws, {});
  assert.ok(!out2.ok && out2.kind === 'crashed');
  if (!out2.ok) {
    assert.match(out2.message, /did not start: .*exited with code 1: broken at import/);
    assert.match(out2.logs, /loading/);
  }
});

test('a result that is not JSON; process.exit in the handler is a crash', async () => {
  const bigint = await build({ 'index.mjs': `export default async () => ({ n: 10n });` });
  const out = await invokeOnce(bigint, {});
  assert.ok(!out.ok && out.kind === 'error' && /not JSON-serializable/.test(out.message), JSON.stringify(out));

  const exit = await build({ 'index.mjs': `export default async () => { console.error('leaving now'); process.exit(3); };` });
  const out3 = await invokeOnce(exit, {});
  assert.ok(!out3.ok && out3.kind === 'crashed', JSON.stringify(out3));
  if (!out3.ok) assert.is(out3.message, 'the instance exited with code 3: leaving now');
});

test('a handler that never resolves times out; the instance (and its own child) are gone', async () => {
  const pidFile = path.join(root, `pids-${randomUUID()}.json`);
  const built = await build({
    'index.mjs': `import { spawn } from 'node:child_process';
      import fs from 'node:fs';
      export default async (event) => {
        const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
        fs.writeFileSync(event.pidFile, JSON.stringify([process.pid, grandchild.pid]));
        return new Promise(() => {});
      };`,
  });
  const out = await invokeOnce(built, { pidFile }, { timeoutMs: 500 });
  assert.not.ok(out.ok);
  if (out.ok) return;
  assert.is(out.kind, 'timeout');
  assert.ok(out.durationMs >= 500 && out.durationMs < 5_000, `took ${out.durationMs} ms`);
  const [pid, grandchild] = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as [number, number];
  await waitFor('the instance process to die', () => !alive(pid), { timeoutMs: 5_000 });
  await waitFor('the grandchild to die', () => !alive(grandchild), { timeoutMs: 5_000 });
});

test('over its memory: the instance dies, the invocation says why', async () => {
  const built = await build({
    'index.mjs': `const keep = []; export default async () => { for (;;) keep.push('x'.repeat(1024 * 1024) + Math.random()); };`,
  });
  const out = await invokeOnce(built, {}, { memoryMb: 64, timeoutMs: 20_000 });
  assert.ok(!out.ok && out.kind === 'crashed', JSON.stringify(out).slice(0, 500));
  if (!out.ok) assert.match(out.message, /ran out of memory \(limit 64 MB\)/);
});

test('the platform environment does not reach the function', async () => {
  process.env.CONTAINERPUB_TEST_SECRET = 'do-not-leak';
  const built = await build({ 'index.mjs': `export default async () => Object.keys(process.env).sort();` });
  const out = await invokeOnce(built, null);
  delete process.env.CONTAINERPUB_TEST_SECRET;
  assert.ok(out.ok);
  if (!out.ok) return;
  const keys = out.result as string[];
  assert.not.ok(keys.includes('CONTAINERPUB_TEST_SECRET'));
  for (const k of ['CONTAINERPUB_FUNCTION_ID', 'CONTAINERPUB_VERSION', 'CONTAINERPUB_DEPLOYMENT_ID', 'CONTAINERPUB_INSTANCE_ID', 'CONTAINERPUB_SOCKET', 'PATH']) {
    assert.ok(keys.includes(k), k);
  }
});

test('an INSTANCE_DIR too long for Unix socket paths is refused at start, naming the variable', () => {
  assert.throws(
    () => new ProcessDriver({ artifactsDir, instanceDir: path.join(root, 'x'.repeat(120)) }),
    /INSTANCE_DIR .* is too long for Unix socket paths/,
  );
});

test('a custom Dockerfile is refused by the process driver', async () => {
  try {
    await build({ Dockerfile: 'FROM scratch\n' }, { kind: 'dockerfile' });
    assert.unreachable('should refuse');
  } catch (err) {
    assert.instance(err, BuildError);
    assert.is((err as Error).message, 'a custom Dockerfile needs the docker driver (RUNTIME_DRIVER=docker)');
  }
});

test('a missing entry module, an entry outside the root, an aborted build', async () => {
  for (const entry of ['nope.mjs', '../escape.mjs']) {
    try {
      await build({ 'index.mjs': 'export default () => 1;' }, { kind: 'node', entry });
      assert.unreachable('should refuse');
    } catch (err) {
      assert.instance(err, BuildError, String(err));
    }
  }
  const ac = new AbortController();
  ac.abort();
  const input: BuildInput = {
    functionId: randomUUID(),
    deploymentId: randomUUID(),
    version: 1,
    sourceDir: sourceDir({ 'index.mjs': 'export default () => 1;' }),
    function: { kind: 'node', entry: 'index.mjs' },
    log() {},
    signal: ac.signal,
  };
  await driver.build(input).then(
    () => assert.unreachable('should abort'),
    (err) => assert.instance(err, BuildError),
  );
  assert.not.ok(await driver.hasArtifact({ ...input, imageTag: null }));
});

test('removeArtifact removes the version (and the emptied function dir); idempotent', async () => {
  const built = await build({ 'index.mjs': `export default async () => 1;` });
  const ref = { functionId: built.functionId, version: 1, imageTag: null };
  assert.ok(await driver.hasArtifact(ref));
  await driver.removeArtifact(ref);
  assert.not.ok(await driver.hasArtifact(ref));
  assert.not.ok(fs.existsSync(path.join(artifactsDir, built.functionId)));
  await driver.removeArtifact(ref);
  await driver.instances.start(spec(built)).then(
    () => assert.unreachable('should throw'),
    (err) => assert.instance(err, ArtifactMissingError),
  );
});

// ---------------------------------------------------------------- bounded output (pure)

test('output: TailBuffer keeps the last bytes without splitting a character; lastLine', () => {
  const t = new TailBuffer(1024);
  for (let i = 0; i < 200; i++) t.write(`line ${i} ${'é'.repeat(50)}\n`);
  const text = t.toString();
  assert.ok(Buffer.byteLength(text) <= 1024);
  assert.not.match(text, '\uFFFD');
  assert.match(text, /line 199 é+\n$/);
  assert.is(lastLine('Error: first\n    at x\nthe real message\n\n'), 'the real message');
  assert.is(lastLine('  \n'), null);
});

// ---------------------------------------------------------------- docker progress streams (pure)

test('docker-stream: a successful build: stream lines and the image id', () => {
  const scan = scanDockerEvents([
    { stream: 'Step 1/3 : FROM containerpub/node-base:20' },
    { stream: '\n' },
    { stream: ' ---> cbb310963990\n' },
    { stream: 'Step 2/3 : COPY . /app/\n' },
    { stream: ' ---> 1f2e3d4c5b6a\n' },
    { aux: { ID: 'sha256:1f2e3d4c5b6a' } },
    { stream: 'Successfully built 1f2e3d4c5b6a\n' },
    { stream: 'Successfully tagged function-abc-v1:latest\n' },
  ]);
  assert.is(scan.error, null);
  assert.equal(scan.lines, [
    'Step 1/3 : FROM containerpub/node-base:20',
    ' ---> cbb310963990',
    'Step 2/3 : COPY . /app/',
    ' ---> 1f2e3d4c5b6a',
    'Successfully built 1f2e3d4c5b6a',
    'Successfully tagged function-abc-v1:latest',
  ]);
});

test('docker-stream: a failed COPY arrives as an error event inside a normal stream', () => {
  const message = 'COPY failed: file not found in build context or excluded by .dockerignore: stat missing-file: file does not exist';
  const scan = scanDockerEvents([
    { stream: 'Step 1/2 : FROM containerpub/node-base:20\n' },
    { stream: 'Step 2/2 : COPY missing-file /x\n' },
    { errorDetail: { message }, error: message },
  ]);
  assert.is(scan.error, message);
  assert.equal(scan.lines.at(-1), `ERROR: ${message}`);

  assert.is(scanDockerEvents([{ errorDetail: { message: 'only detail' } }]).error, 'only detail');
  assert.is(scanDockerEvents([{ error: 'only error' }]).error, 'only error');
  assert.is(scanDockerEvents([{ error: 'first' }, { error: 'second' }]).error, 'first');
  assert.ok(scanDockerEvents([{ errorDetail: {} }]).error);
});

test('docker-stream: push statuses without progress-bar noise; a refused push', () => {
  const ok = scanDockerEvents([
    { status: 'The push refers to repository [127.0.0.1:5000/function-abc-v1]' },
    { status: 'Preparing', progressDetail: {}, id: '5f70bf18a086' },
    { status: 'Pushing', progressDetail: { current: 512, total: 1024 }, progress: '[====>    ]', id: '5f70bf18a086' },
    { status: 'Pushed', progressDetail: {}, id: '5f70bf18a086' },
    { status: 'latest: digest: sha256:abcd size: 528' },
    { progressDetail: {}, aux: { Tag: 'latest', Digest: 'sha256:abcd', Size: 528 } },
  ]);
  assert.is(ok.error, null);
  assert.equal(ok.lines, [
    'The push refers to repository [127.0.0.1:5000/function-abc-v1]',
    '5f70bf18a086: Preparing',
    '5f70bf18a086: Pushed',
    'latest: digest: sha256:abcd size: 528',
  ]);
  const refused = scanDockerEvents([
    { status: 'The push refers to repository [127.0.0.1:5000/function-abc-v1]' },
    { errorDetail: { message: 'Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused' }, error: 'Get …' },
  ]);
  assert.match(refused.error ?? '', /connection refused/);
});

test.run();
