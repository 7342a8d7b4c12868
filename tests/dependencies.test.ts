// Dependencies installed at build time, end to end with the process driver: a function that ships
// package.json and package-lock.json but no node_modules builds against the local npm registry
// (NPM_REGISTRY) and runs with its dependency; a code-only change reuses the cached install; a
// missing lockfile and a package the registry lacks fail the build with the reason, and what is
// live stays live.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTarGz } from './support/archives.ts';
import { deployAndBuild } from './support/flows.ts';
import { startNpmRegistry } from './support/npm-registry.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';

const registry = await startNpmRegistry([
  { name: 'shout', version: '2.0.0', files: { 'index.js': "module.exports = (s) => s.toUpperCase() + '!';" } },
  { name: 'greet', version: '1.0.0', files: { 'index.js': "const shout = require('shout'); module.exports = (n) => shout('hello ' + n);" }, dependencies: { shout: '2.0.0' } },
]);
const t = await startTestPlatform({ NPM_REGISTRY: registry.url }, { runner: true });
if (!t) {
  await registry.close();
  process.exit(0);
}
const tp = t as TestPlatform;
const api = await tp.newUser();

const ESM = { main: 'index.mjs', type: 'module' };

/** A Node function using `greet`; its package.json and lockfile (unless left out) name `deps`. */
function withDependencies(source: string, deps: Record<string, string> = { greet: '1.0.0' }, opts: { lockfile?: boolean } = {}) {
  return makeTarGz([
    { name: 'package.json', content: registry.packageJson(deps, 'fn', ESM) },
    ...(opts.lockfile === false ? [] : [{ name: 'package-lock.json', content: registry.lockfile(deps) }]),
    { name: 'index.mjs', content: source },
  ]);
}

const greeter = (tag: string) => `import greet from 'greet';\nexport default async (event) => ({ tag: ${JSON.stringify(tag)}, said: greet(event.name) });`;

const shortKeyOf = (logs: string) => /(?:cached as|reusing the cached install) ([0-9a-f]{12})/.exec(logs)?.[1];

const deps = suite('dependencies installed at build time');

deps.after(async () => {
  await tp.close();
  await registry.close();
});

deps('a function with a lockfile and no node_modules builds, and runs with its dependency; a code-only change reuses the install', async () => {
  const v1 = await deployAndBuild(api, 'greeter', await withDependencies(greeter('v1')));
  assert.is(v1.built.status, 'active', `${v1.built.error}\n${v1.built.buildLogs}`);
  assert.match(v1.built.buildLogs, /npm ci --omit=dev --ignore-scripts from http:\/\/127\.0\.0\.1:\d+\//);
  assert.match(v1.built.buildLogs, /added 2 packages/);
  const key = shortKeyOf(v1.built.buildLogs);
  assert.ok(key, v1.built.buildLogs);
  const res = await api.post(`/api/functions/${v1.id}/invoke`, { name: 'ada' });
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.result, { tag: 'v1', said: 'HELLO ADA!' });

  const requests = registry.requests.length;
  const v2 = await deployAndBuild(api, 'greeter', await withDependencies(greeter('v2')));
  assert.is(v2.built.status, 'active', `${v2.built.error}\n${v2.built.buildLogs}`);
  assert.match(v2.built.buildLogs, new RegExp(`reusing the cached install ${key} \\(same package-lock\\.json\\)`));
  assert.not.match(v2.built.buildLogs, /npm ci/, 'npm did not run');
  assert.is(registry.requests.length, requests, 'the registry was not asked again');
  const after = await api.post(`/api/functions/${v1.id}/invoke`, { name: 'bob' });
  assert.is(after.status, 200, JSON.stringify(after.body));
  assert.equal(after.body.result, { tag: 'v2', said: 'HELLO BOB!' });
});

deps('no lockfile: the build fails saying how to make one; the live version stays', async () => {
  const v1 = await deployAndBuild(api, 'nolock', await withDependencies(greeter('v1')));
  assert.is(v1.built.status, 'active', v1.built.error ?? '');
  const v2 = await deployAndBuild(api, 'nolock', await withDependencies(greeter('v2'), { greet: '1.0.0' }, { lockfile: false }));
  assert.is(v2.built.status, 'failed');
  assert.match(v2.built.error, /package\.json lists dependencies, but the archive has no package-lock\.json/);
  assert.match(v2.built.error, /npm install --package-lock-only/);
  assert.match(v2.built.buildLogs, /npm install --package-lock-only/);
  assert.is((await api.get(`/api/functions/${v1.id}`)).body.activeVersion, 1);
  const res = await api.post(`/api/functions/${v1.id}/invoke`, { name: 'ada' });
  assert.is(res.body.result.tag, 'v1');
});

deps('a dependency the registry does not have: npm\'s E404 in the error and the build log; the live version stays', async () => {
  const v1 = await deployAndBuild(api, 'missing', await withDependencies(greeter('v1')));
  assert.is(v1.built.status, 'active', v1.built.error ?? '');
  const v2 = await deployAndBuild(api, 'missing', await withDependencies(greeter('v2'), { greet: '1.0.0', ghost: '3.1.4' }));
  assert.is(v2.built.status, 'failed');
  assert.match(v2.built.error, /npm ci failed \(E404\): 404 Not Found - GET http:\/\/127\.0\.0\.1:\d+\/ghost\/-\/ghost-3\.1\.4\.tgz/);
  assert.match(v2.built.buildLogs, /npm error code E404/);
  assert.match(v2.built.buildLogs, /build failed: npm ci failed \(E404\)/);
  assert.is(v2.built.isActive, false);
  assert.is((await api.get(`/api/functions/${v1.id}`)).body.activeVersion, 1);
  const res = await api.post(`/api/functions/${v1.id}/invoke`, { name: 'ada' });
  assert.equal(res.body.result, { tag: 'v1', said: 'HELLO ADA!' });
});

deps.run();
