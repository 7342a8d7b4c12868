// installDependencies against a real npm and the local registry fixture: what it installs and
// caches, what it refuses (the function's faults: BuildError) and what it waits out (the
// registry's: InfrastructureError), and that an abort kills npm. Then the process driver's copy.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { installDependencies, npmFailure, pruneCache, type InstallDependenciesOptions } from '../../shared/runtime/dependencies.ts';
import { BuildError, InfrastructureError } from '../../shared/runtime/types.ts';
import { startNpmRegistry } from '../support/npm-registry.ts';
import { processFixture } from '../support/process-fixture.ts';
import { waitFor } from '../support/services.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-deps-'));
const registry = await startNpmRegistry([
  { name: 'shout', version: '2.0.0', files: { 'index.js': "module.exports = (s) => s.toUpperCase() + '!';" } },
  { name: 'greet', version: '1.0.0', files: { 'index.js': "const shout = require('shout'); module.exports = (n) => shout('hello ' + n);" }, dependencies: { shout: '2.0.0' } },
  { name: 'greet', version: '1.1.0', files: { 'index.js': "module.exports = (n) => 'hi ' + n;" } },
  {
    name: 'scripted',
    version: '1.0.0',
    files: {
      'index.js': 'module.exports = 1;',
      // --ignore-scripts: this must never run
      'package.json': JSON.stringify({ name: 'scripted', version: '1.0.0', scripts: { postinstall: 'node -e "require(\'fs\').writeFileSync(\'ran\', \'\')"', install: 'touch ran' } }),
    },
  },
]);
const fx = processFixture();
test.after(async () => {
  await registry.close();
  fx.cleanup();
  fs.rmSync(tmp, { recursive: true, force: true });
});

let n = 0;
/** A function root holding `files`, and a cache directory of its own unless one is given. */
function fn(files: Record<string, string>): string {
  const root = path.join(tmp, `fn-${++n}`);
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), content);
  }
  return root;
}

const withDeps = (deps: Record<string, string>, extra: Record<string, string> = {}) =>
  fn({ 'package.json': registry.packageJson(deps), 'package-lock.json': registry.lockfile(deps), 'index.js': 'module.exports = () => 1;', ...extra });

function install(root: string, over: Partial<InstallDependenciesOptions> = {}) {
  const lines: string[] = [];
  const cacheDir = over.cacheDir ?? path.join(tmp, `cache-${++n}`);
  const promise = installDependencies({
    root,
    cacheDir,
    npmRegistry: registry.url,
    signal: new AbortController().signal,
    log: (line) => lines.push(line),
    ...over,
  });
  return { promise, lines, cacheDir };
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

// ---------------------------------------------------------------- nothing to do

test('nothing to install: no package.json, no dependencies (dev, peer and optional only too), or node_modules shipped', async () => {
  assert.is(await install(fn({ 'index.js': '' })).promise, null);
  assert.is(await install(fn({ 'package.json': '{"name":"fn"}' })).promise, null);
  assert.is(await install(fn({ 'package.json': '{"dependencies":{}}' })).promise, null);
  const devOnly = JSON.stringify({ devDependencies: { greet: '1.0.0' }, peerDependencies: { shout: '2.0.0' }, optionalDependencies: { shout: '2.0.0' } });
  assert.is(await install(fn({ 'package.json': devOnly })).promise, null, 'no lockfile needed either');
  const shipped = install(withDeps({ greet: '1.0.0' }, { 'node_modules/greet/index.js': 'module.exports = 0;' }));
  assert.is(await shipped.promise, null);
  assert.match(shipped.lines.join('\n'), /ships node_modules/);
  assert.not.ok(fs.existsSync(shipped.cacheDir), 'nothing written to the cache');
});

// ---------------------------------------------------------------- the function's faults

test('dependencies without a lockfile: a BuildError saying how to make one', async () => {
  const err = await rejection(install(fn({ 'package.json': registry.packageJson({ greet: '1.0.0' }) })).promise);
  assert.instance(err, BuildError);
  assert.match(err.message, /no package-lock\.json \(or npm-shrinkwrap\.json\)/);
  assert.match(err.message, /npm install --package-lock-only/);
  assert.match(err.message, /or ship node_modules/);
});

test('a package.json or lockfile that is not JSON, and dependencies that are not an object: BuildError', async () => {
  const bad = await rejection(install(fn({ 'package.json': '{"dependencies": ' })).promise);
  assert.instance(bad, BuildError);
  assert.match(bad.message, /^package\.json is not valid JSON/);
  const notObject = await rejection(install(fn({ 'package.json': '{"dependencies": ["greet"]}' })).promise);
  assert.instance(notObject, BuildError);
  const badLock = await rejection(install(fn({ 'package.json': registry.packageJson({ greet: '1.0.0' }), 'package-lock.json': 'nope' })).promise);
  assert.instance(badLock, BuildError);
  assert.match(badLock.message, /^package-lock\.json is not valid JSON/);
});

test('git and file dependencies in the lockfile are refused before npm runs', async () => {
  const lock = JSON.parse(registry.lockfile({ greet: '1.0.0' }));
  lock.packages['node_modules/greet'].resolved = 'git+ssh://git@example.com/evil/greet.git#abc';
  const git = install(fn({ 'package.json': registry.packageJson({ greet: '1.0.0' }), 'package-lock.json': JSON.stringify(lock) }));
  const err = await rejection(git.promise);
  assert.instance(err, BuildError);
  assert.match(err.message, /node_modules\/greet comes from git\+ssh:\/\/git@example\.com.*only registry packages/);
  lock.packages['node_modules/greet'] = { resolved: 'lib/greet', link: true };
  const link = await rejection(install(fn({ 'package.json': registry.packageJson({ greet: '1.0.0' }), 'package-lock.json': JSON.stringify(lock) })).promise);
  assert.match(link.message, /link to a local directory/);
});

test('a package the registry does not have: npm\'s E404 as a BuildError', async () => {
  const run = install(withDeps({ ghost: '1.0.0' }));
  const err = await rejection(run.promise);
  assert.instance(err, BuildError);
  assert.match(err.message, /^npm ci failed \(E404\): 404 Not Found - GET http:\/\/127\.0\.0\.1:\d+\/ghost\/-\/ghost-1\.0\.0\.tgz/);
  assert.match(run.lines.join('\n'), /npm error code E404/, 'npm\'s output is in the build log');
  assert.equal(fs.readdirSync(path.join(run.cacheDir, 'tmp')), [], 'the sandbox is removed');
  assert.not.ok(fs.existsSync(path.join(run.cacheDir, 'deps')), 'nothing cached');
});

// ---------------------------------------------------------------- installs and the cache

test('installs from the registry into the cache; a second build reuses it without the network', async () => {
  const root = withDeps({ greet: '1.0.0', scripted: '1.0.0' }, { '.npmrc': 'registry=http://127.0.0.1:9/\n' });
  const first = install(root);
  const deps = await first.promise;
  assert.ok(deps, 'installed');
  assert.match(deps.key, /^[0-9a-f]{64}$/);
  assert.is(deps.nodeModulesDir, path.join(first.cacheDir, 'deps', deps.key, 'node_modules'));
  const require = createRequire(path.join(deps.nodeModulesDir, 'x.js'));
  assert.is(require('greet')('ada'), 'HELLO ADA!', 'greet and what it depends on');
  assert.not.ok(fs.existsSync(path.join(deps.nodeModulesDir, 'scripted', 'ran')), 'install scripts never run');
  assert.match(first.lines.join('\n'), /npm ci --omit=dev --ignore-scripts/);
  assert.match(first.lines.join('\n'), /added 3 packages/);
  assert.match(first.lines.join('\n'), /installed in [\d.]+ s, cached as [0-9a-f]{12}/);
  assert.equal(fs.readdirSync(path.join(first.cacheDir, 'tmp')), [], 'the sandbox is removed');
  assert.not.ok(fs.existsSync(path.join(first.cacheDir, 'deps', deps.key, 'index.js')), 'the function\'s code never enters the sandbox');

  // the same lockfile with other code: the same key, no request to the registry
  const before = registry.requests.length;
  const codeChanged = withDeps({ greet: '1.0.0', scripted: '1.0.0' }, { 'index.js': 'module.exports = () => 2;' });
  const second = install(codeChanged, { cacheDir: first.cacheDir });
  const again = await second.promise;
  assert.equal(again, deps);
  assert.match(second.lines.join('\n'), new RegExp(`reusing the cached install ${deps.key.slice(0, 12)}`));
  assert.is(registry.requests.length, before, 'no request to the registry');

  // another lockfile: another key
  const other = await install(withDeps({ greet: '1.1.0' }), { cacheDir: first.cacheDir }).promise;
  assert.ok(other && other.key !== deps.key);
});

test('two builds installing the same lockfile at once: both succeed, one cache entry', async () => {
  const cacheDir = path.join(tmp, 'race');
  const [a, b] = await Promise.all([install(withDeps({ greet: '1.1.0' }), { cacheDir }).promise, install(withDeps({ greet: '1.1.0' }), { cacheDir }).promise]);
  assert.equal(a, b);
  assert.is(fs.readdirSync(path.join(cacheDir, 'deps')).length, 1);
  assert.ok(fs.existsSync(path.join(a!.nodeModulesDir, 'greet', 'index.js')));
  assert.equal(fs.readdirSync(path.join(cacheDir, 'tmp')), []);
});

test('the cache keeps the most recently used entries', async () => {
  const depsDir = path.join(tmp, 'prune', 'deps');
  const names = ['a', 'b', 'c', 'd'].map((c) => c.repeat(64));
  names.forEach((name, i) => {
    fs.mkdirSync(path.join(depsDir, name, 'node_modules'), { recursive: true });
    const when = new Date(Date.now() - (10 - i) * 60_000); // a oldest, d newest
    fs.utimesSync(path.join(depsDir, name), when, when);
  });
  assert.is(await pruneCache(depsDir, 2, names[0]), 1, 'the current entry stays even when it is old');
  assert.equal(fs.readdirSync(depsDir).sort(), [names[0], names[2], names[3]]);
  assert.is(await pruneCache(depsDir, 3), 0);
});

// ---------------------------------------------------------------- the registry's faults

test('a registry that refuses connections is an outage: InfrastructureError, not a BuildError', async () => {
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
  const err = await rejection(install(withDeps({ greet: '1.1.0' }), { npmRegistry: `http://127.0.0.1:${closed}/` }).promise);
  assert.instance(err, InfrastructureError);
  assert.is((err as InfrastructureError).service, 'npm');
  assert.match(err.message, /unreachable or failing \(ECONNREFUSED\)/);
});

test('a registry answering 503 is an outage too', async () => {
  registry.failWith = 503;
  try {
    const err = await rejection(install(withDeps({ shout: '2.0.0' })).promise);
    assert.instance(err, InfrastructureError);
    assert.match(err.message, /\(E503\)/);
  } finally {
    registry.failWith = null;
  }
});

test('npm\'s error lines become one message; network codes and 5xx are outages', () => {
  const e404 = npmFailure(
    ['npm error code E404', 'npm error 404 Not Found - GET http://r/x/-/x-1.tgz - not found', 'npm error 404', 'npm error Log files were not written due to the config logs-max=0'],
    { code: 1, signal: null },
  );
  assert.instance(e404, BuildError);
  assert.is(e404.message, 'npm ci failed (E404): 404 Not Found - GET http://r/x/-/x-1.tgz - not found');
  assert.instance(npmFailure(['npm error code EAI_AGAIN', 'npm error request to http://r failed'], { code: 1, signal: null }), InfrastructureError);
  assert.instance(npmFailure(['npm error code E502'], { code: 1, signal: null }), InfrastructureError);
  const usage = npmFailure(['npm error code EUSAGE', 'npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync.'], { code: 1, signal: null });
  assert.instance(usage, BuildError);
  assert.match(usage.message, /in sync/);
  assert.not.instance(npmFailure([], { code: null, signal: 'SIGKILL' }), BuildError, 'killed from outside: not the function\'s fault');
});

test('an abort kills npm at once (its connection to the registry closes) and leaves no sandbox', async () => {
  // a registry that accepts connections and never answers
  const sockets: net.Socket[] = [];
  let closedSockets = 0;
  const stall = net.createServer((socket) => {
    sockets.push(socket);
    socket.resume(); // read (and drop) the request: an unread socket never sees its end
    socket.on('close', () => closedSockets++);
  });
  await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve));
  try {
    const abort = new AbortController();
    const run = install(withDeps({ greet: '1.1.0' }), { npmRegistry: `http://127.0.0.1:${(stall.address() as net.AddressInfo).port}/`, signal: abort.signal });
    await waitFor('npm to connect to the registry', () => sockets.length > 0, { timeoutMs: 20_000 });
    const t0 = Date.now();
    abort.abort(new Error('build timed out (test)'));
    const err = await rejection(run.promise);
    assert.is(err.message, 'build timed out (test)', 'the abort\'s reason');
    assert.ok(Date.now() - t0 < 3000, `settled ${Date.now() - t0} ms after the abort`);
    await waitFor('npm\'s connections to close', () => closedSockets === sockets.length, { timeoutMs: 3000 });
    assert.equal(fs.readdirSync(path.join(run.cacheDir, 'tmp')), []);
  } finally {
    for (const s of sockets) s.destroy();
    stall.close();
  }
});

// ---------------------------------------------------------------- the process driver

test('the process driver copies the installed dependencies into the version, leaving the cache entry as it was', async () => {
  const deps = await install(withDeps({ greet: '1.0.0' })).promise;
  assert.ok(deps);
  const lines: string[] = [];
  const input = {
    functionId: 'deps-fn',
    deploymentId: 'd1',
    version: 1,
    sourceDir: fx.sourceDir({ 'index.mjs': "import greet from 'greet'; export default async (e) => greet(e.name);" }),
    function: { kind: 'node' as const, entry: 'index.mjs' },
    log: (line: string) => lines.push(line),
    signal: new AbortController().signal,
    dependencies: deps,
  };
  await fx.driver.build(input);
  const dir = fx.driver.artifactDir(input);
  assert.ok(fs.existsSync(path.join(dir, 'node_modules', 'greet', 'index.js')));
  assert.ok(fs.existsSync(path.join(dir, 'node_modules', 'shout', 'index.js')));
  assert.ok(fs.existsSync(path.join(deps.nodeModulesDir, 'greet', 'index.js')), 'copied, not moved');
  assert.match(lines.join('\n'), /copied the dependencies \([0-9a-f]{12}\) into node_modules/);
  fs.writeFileSync(path.join(dir, 'node_modules', 'greet', 'index.js'), 'module.exports = () => "changed";');
  assert.match(fs.readFileSync(path.join(deps.nodeModulesDir, 'greet', 'index.js'), 'utf8'), /shout/, 'a version cannot write into the cache');
});

test.run();
