// The process driver end to end (build → invoke → remove) against real child processes, and the
// invocation-output parsing both drivers share (pure: no engine, no child).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PROCESS_DRIVER_WARNING, ProcessDriver } from '../../shared/runtime/process-driver.ts';
import { LOG_LIMIT_BYTES, OutputCollector, RESULT_LIMIT_BYTES, parseInvocationOutput } from '../../shared/runtime/output.ts';
import { scanDockerEvents } from '../../shared/runtime/docker-stream.ts';
import { ArtifactMissingError } from '../../shared/runtime/protocol.ts';
import { BuildError, type BuildInput, type FunctionKind, type InvokeInput } from '../../shared/runtime/types.ts';
import { waitFor } from '../support/services.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-process-'));
const artifactsDir = path.join(root, 'artifacts');
const warnings: string[] = [];
const driver = new ProcessDriver({
  artifactsDir,
  memoryMb: 128,
  logger: { info() {}, warn: (msg: string) => warnings.push(msg) },
});

test.after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** A source directory holding `files`, as the archive step leaves it. */
function sourceDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(root, 'src-'));
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

async function build(files: Record<string, string>, fn: FunctionKind = { kind: 'node', entry: 'index.mjs' }) {
  const functionId = randomUUID();
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
  const result = await driver.build(input);
  return { ...input, result, lines };
}

function invokeInput(built: { functionId: string; deploymentId: string; version: number }, event: unknown, timeoutMs = 10_000): InvokeInput {
  return {
    functionId: built.functionId,
    deploymentId: built.deploymentId,
    version: built.version,
    imageTag: null,
    requestId: randomUUID(),
    event,
    timeoutMs,
  };
}

/** Alive and not a zombie (a zombie has exited; only its parent has not collected it yet). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
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

  const input = invokeInput(built, { hello: 'world', n: [1, 2] });
  const out = await driver.invoke(input);
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, {
    echo: { hello: 'world', n: [1, 2] },
    context: { functionId: built.functionId, version: 1, deploymentId: built.deploymentId, requestId: input.requestId },
    cwd: fs.realpathSync(dir),
  });
  assert.type(out.durationMs, 'number');
});

test('prints never corrupt the result, and go to the logs', async () => {
  const built = await build({
    'index.mjs': `export default async () => {
      console.log('{"fake": "result"}');
      process.stdout.write('written to stdout\\n');
      console.error('to stderr');
      process.stdout.write('no newline at the end');
      return { real: true };
    };`,
  });
  const out = await driver.invoke(invokeInput(built, null));
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, { real: true });
  assert.match(out.logs, '{"fake": "result"}');
  assert.match(out.logs, 'written to stdout');
  assert.match(out.logs, 'to stderr');
  assert.match(out.logs, 'no newline at the end');
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
  const out = await driver.invoke(invokeInput(built, null));
  assert.ok(out.ok, out.ok ? '' : out.message);
  if (!out.ok) return;
  assert.is((out.result as { big: string }).big.length, 1024 * 1024);
  assert.ok(out.logs.length <= LOG_LIMIT_BYTES + 100, `logs are ${out.logs.length} bytes`);
  assert.match(out.logs, /^\[\d+ bytes of earlier output dropped\]/);
  assert.match(out.logs, /the end of the logs\n$/);
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
  const out = await driver.invoke(invokeInput(built, { n: 21 }));
  assert.ok(out.ok, JSON.stringify(out));
  if (out.ok) assert.equal(out.result, { doubled: 42, version: 1, cjs: 'function' });

  const named = await build({ 'handler.cjs': `exports.handler = async () => 'named';` }, { kind: 'node', entry: 'handler.cjs' });
  const out2 = await driver.invoke(invokeInput(named, null));
  assert.ok(out2.ok, JSON.stringify(out2));
  if (out2.ok) assert.is(out2.result, 'named');
});

test('undefined result is null; the event travels as JSON', async () => {
  const built = await build({ 'index.mjs': `export async function handler(event) { if (event === null) return undefined; return 1; }` });
  const out = await driver.invoke(invokeInput(built, undefined));
  assert.ok(out.ok, JSON.stringify(out));
  if (out.ok) assert.is(out.result, null);
});

test('rebuilding a version replaces the leftover directory', async () => {
  const first = await build({ 'index.mjs': `export default async () => 'first';` });
  const again: BuildInput = {
    ...first,
    sourceDir: sourceDir({ 'index.mjs': `export default async () => 'second';` }),
  };
  await driver.build(again);
  const out = await driver.invoke(invokeInput(first, null));
  assert.ok(out.ok);
  if (out.ok) assert.is(out.result, 'second');
  assert.equal(fs.readdirSync(path.join(artifactsDir, first.functionId)), ['v1']);
});

// ---------------------------------------------------------------- errors

test('a throwing handler: an error with its message, the stack in the logs', async () => {
  const built = await build({ 'index.mjs': `export default async () => { console.log('before'); throw new Error('boom: bad input'); };` });
  const out = await driver.invoke(invokeInput(built, {}));
  assert.not.ok(out.ok);
  if (out.ok) return;
  assert.is(out.kind, 'error');
  assert.is(out.message, 'boom: bad input');
  assert.match(out.logs, 'before');
  assert.match(out.logs, /at .*index\.mjs/);
});

test('a module that exports no function, and a result that is not JSON', async () => {
  const noFn = await build({ 'index.mjs': `export const value = 1;` });
  const out = await driver.invoke(invokeInput(noFn, {}));
  assert.not.ok(out.ok);
  if (!out.ok) assert.match(out.message, /does not export a handler function/);

  const bigint = await build({ 'index.mjs': `export default async () => ({ n: 10n });` });
  const out2 = await driver.invoke(invokeInput(bigint, {}));
  assert.not.ok(out2.ok);
  if (!out2.ok) assert.match(out2.message, /not JSON-serializable/);

  const exit = await build({ 'index.mjs': `export default async () => { process.exit(3); };` });
  const out3 = await driver.invoke(invokeInput(exit, {}));
  assert.not.ok(out3.ok);
  if (!out3.ok) assert.is(out3.message, 'exited with code 3');
});

test('a handler that never resolves times out, and the child (and its own child) are gone', async () => {
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
  const out = await driver.invoke(invokeInput(built, { pidFile }, 500));
  assert.not.ok(out.ok);
  if (out.ok) return;
  assert.is(out.kind, 'timeout');
  assert.ok(out.durationMs >= 500 && out.durationMs < 5_000, `took ${out.durationMs} ms`);
  const [pid, grandchild] = JSON.parse(fs.readFileSync(pidFile, 'utf8')) as [number, number];
  assert.not.ok(alive(pid), 'the function process is gone');
  await waitFor('the grandchild to die', () => !alive(grandchild), { timeoutMs: 5_000 });
});

test('the platform environment does not reach the function', async () => {
  process.env.CONTAINERPUB_TEST_SECRET = 'do-not-leak';
  const built = await build({ 'index.mjs': `export default async () => Object.keys(process.env).sort();` });
  const out = await driver.invoke(invokeInput(built, null));
  delete process.env.CONTAINERPUB_TEST_SECRET;
  assert.ok(out.ok);
  if (!out.ok) return;
  const keys = out.result as string[];
  assert.not.ok(keys.includes('CONTAINERPUB_TEST_SECRET'));
  for (const k of ['CONTAINERPUB_FUNCTION_ID', 'CONTAINERPUB_VERSION', 'CONTAINERPUB_DEPLOYMENT_ID', 'CONTAINERPUB_REQUEST_ID', 'PATH']) {
    assert.ok(keys.includes(k), k);
  }
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
  await driver.invoke(invokeInput(built, null)).then(
    () => assert.unreachable('should throw'),
    (err) => assert.instance(err, ArtifactMissingError),
  );
});

// ---------------------------------------------------------------- shared output parsing (pure)

const exit0 = { exitCode: 0, timedOut: false, timeoutMs: 1000, durationMs: 5 };

test('output: the last non-empty stdout line is the result, earlier lines are logs', () => {
  const c = new OutputCollector();
  c.stdout('starting\n{"partial":');
  c.stdout('1}\n');
  c.stdout('{"result"');
  c.stderr('a log line\n');
  c.stdout(': [1, 2]}\r\n\n  \n');
  const out = parseInvocationOutput(c.finish(), exit0);
  assert.equal(out, { ok: true, result: { result: [1, 2] }, logs: 'starting\na log line\n{"partial":1}\n', durationMs: 5 });
});

test('output: a result without a trailing newline; no result; invalid JSON', () => {
  const c = new OutputCollector();
  c.stdout('42');
  assert.equal(parseInvocationOutput(c.finish(), exit0), { ok: true, result: 42, logs: '', durationMs: 5 });

  const none = parseInvocationOutput(new OutputCollector().finish(), exit0);
  assert.not.ok(none.ok);
  if (!none.ok) assert.match(none.message, /without writing a result/);

  const bad = new OutputCollector();
  bad.stdout('hello world\n');
  const out = parseInvocationOutput(bad.finish(), exit0);
  assert.not.ok(out.ok);
  if (!out.ok) assert.match(out.message, /not valid JSON.*hello world/);
});

test('output: non-zero exit → the last stderr line, else "exited with code N"; timeout; OOM', () => {
  const c = new OutputCollector();
  c.stderr('Error: first\n    at x\nthe real message\n\n');
  c.stdout('{"ignored": true}\n');
  const out = parseInvocationOutput(c.finish(), { ...exit0, exitCode: 1 });
  assert.equal(out.ok ? null : [out.kind, out.message], ['error', 'the real message']);
  assert.match(out.logs, /the real message\n\n\{"ignored": true\}\n$/, 'the last stdout line is kept in the logs');

  const silent = parseInvocationOutput(new OutputCollector().finish(), { ...exit0, exitCode: 2 });
  assert.equal(silent.ok ? null : silent.message, 'exited with code 2');

  const timeout = parseInvocationOutput(new OutputCollector().finish(), { ...exit0, exitCode: 137, timedOut: true });
  assert.equal(timeout.ok ? null : [timeout.kind, timeout.message], ['timeout', 'timed out after 1000 ms']);

  const oom = parseInvocationOutput(new OutputCollector().finish(), { ...exit0, exitCode: 137, oomKilled: true, memoryMb: 64 });
  assert.ok(!oom.ok && oom.kind === 'error' && /memory limit of 64 MB/.test(oom.message));
});

test('output: memory stays bounded; an over-long last line is refused, an over-long earlier line is a log', () => {
  const c = new OutputCollector();
  const chunk = Buffer.alloc(1024 * 1024, 'y');
  for (let i = 0; i < 9; i++) c.stdout(chunk); // one 9 MiB line
  c.stdout('\n');
  const over = parseInvocationOutput(c.finish(), exit0);
  assert.ok(!over.ok && /larger than 8 MiB/.test(over.message));
  assert.ok(over.logs.length <= LOG_LIMIT_BYTES + 64);

  const c2 = new OutputCollector();
  for (let i = 0; i < 9; i++) c2.stdout(chunk);
  c2.stdout('\n"fine"\n');
  const ok = parseInvocationOutput(c2.finish(), exit0);
  assert.equal(ok.ok ? ok.result : null, 'fine');
  assert.ok(RESULT_LIMIT_BYTES === 8 * 1024 * 1024);

  const c3 = new OutputCollector();
  for (let i = 0; i < 200; i++) c3.stderr(`line ${i} ${'é'.repeat(500)}\n`);
  const logs = c3.finish().logs;
  assert.ok(Buffer.byteLength(logs) <= LOG_LIMIT_BYTES + 64);
  assert.not.match(logs, '\uFFFD');
  assert.match(logs, /line 199 é+\n$/);
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
