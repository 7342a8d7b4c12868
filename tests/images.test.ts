// Images of Node functions built without docker build, against the real engine and the registry at
// 127.0.0.1:5000 (issue 14): identical files give the identical function layer; a dependencies
// layer of the same install key is the same layer while the code changes (by hand, and end to end
// with npm ci against a local npm registry); an image removed from the
// engine, pulled back by hand and run with `docker run -i` prints the handler's result; and without
// a registry the same image is docker-loaded and runs.
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DockerDriver } from '../shared/runtime/docker-driver.ts';
import { baseRegistryName } from '../shared/runtime/image/base-image.ts';
import { RegistryClient } from '../shared/runtime/registry.ts';
import type { BuildInput } from '../shared/runtime/types.ts';
import { makeNodeFunction, makeTarGz } from './support/archives.ts';
import { deployAndBuild } from './support/flows.ts';
import { startNpmRegistry } from './support/npm-registry.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { ignoreClosedStdin } from './support/processes.ts';
import { writeSourceDir } from './support/process-fixture.ts';
import { TEST_BASE_IMAGE, TEST_REGISTRY, dockerBuildServices, waitFor } from './support/services.ts';

const run = promisify(execFile);
const REGISTRY = TEST_REGISTRY;
const BASE_IMAGE = TEST_BASE_IMAGE;
if (!(await dockerBuildServices())) process.exit(0);
const registry = new RegistryClient(REGISTRY);
const docker = new Docker();

const npm = await startNpmRegistry([{ name: 'shout', version: '2.0.0', files: { 'index.js': "module.exports = (s) => s.toUpperCase() + '!';" } }]);
const t = await startTestPlatform(
  { RUNTIME_DRIVER: 'docker', REGISTRY, FUNCTION_BASE_IMAGE: BASE_IMAGE, CLEANUP_CRON: 'off', NPM_REGISTRY: npm.url },
  { runner: true },
);
if (!t) {
  await npm.close();
  process.exit(0);
}
const tp = t as TestPlatform;
const driver = tp.driver as DockerDriver;
/** images built by the driver directly (not through the API): removed at the end */
const driverBuilt: { functionId: string; version: number; imageTag: string | null }[] = [];
/** functions deployed through the API: deleted at the end (their images go from engine and registry) */
const deployed: { api: Awaited<ReturnType<TestPlatform['newUser']>>; id: string }[] = [];

test.after(async () => {
  for (const ref of driverBuilt) await driver.removeArtifact(ref).catch(() => {});
  for (const { api, id } of deployed) await api.del(`/api/functions/${id}`).catch(() => {});
  await tp.close();
  await npm.close();
});

/** The manifest and config of `repository:latest`, read from the registry. */
async function imageOf(repository: string) {
  const stored = await registry.getManifest(repository, 'latest');
  assert.ok(stored, `${repository}:latest is in the registry`);
  const manifest = JSON.parse(stored!.bytes.toString()) as { config: { digest: string }; layers: { digest: string; size: number }[] };
  const config = JSON.parse((await registry.getBlob(repository, manifest.config.digest)).toString());
  return { manifest, config, layers: manifest.layers.map((l) => l.digest) };
}
const repoOf = (functionId: string, version: number) => `function-${functionId}-v${version}`;

const handler = `export default async (event) => ({ doubled: event.n * 2, uid: process.getuid(), cwd: process.cwd() });`;

test('deterministic: the same files deployed as two functions give the same function layer', async () => {
  const api = await tp.newUser();
  // the same files, in archives that differ (entry order, modes): the layer does not
  const first = await makeNodeFunction(handler, { 'lib/data.json': '{"a":1}' });
  const second = await makeTarGz([
    { name: 'lib/data.json', content: '{"a":1}', mode: 0o600 },
    { name: 'index.mjs', content: handler, mode: 0o600 },
    { name: 'package.json', content: JSON.stringify({ name: 'fn', main: 'index.mjs', type: 'module' }) },
  ]);
  assert.not.ok(first.equals(second), 'the archives themselves differ');
  const a = await deployAndBuild(api, 'twin-a', first, 60_000);
  assert.is(a.built.status, 'active', `${a.built.error}\n${a.built.buildLogs}`);
  const b = await deployAndBuild(api, 'twin-b', second, 60_000);
  assert.is(b.built.status, 'active', `${b.built.error}\n${b.built.buildLogs}`);

  deployed.push({ api, id: a.id }, { api, id: b.id });
  const [ia, ib] = [await imageOf(repoOf(a.id, 1)), await imageOf(repoOf(b.id, 1))];
  assert.is(ib.layers.at(-1), ia.layers.at(-1), 'two functions, the same files: one function layer');
  assert.match(a.built.buildLogs, `function layer ${ia.layers.at(-1)}`);
  assert.is.not(ib.manifest.config.digest, ia.manifest.config.digest, 'the configs differ by their labels');

  // the base's layers come first, mounted from the base's own repository, never uploaded
  const base = baseRegistryName(BASE_IMAGE, (await docker.getImage(BASE_IMAGE).inspect()).Id);
  const baseImage = await registry.getManifest(base.repository, base.tag);
  assert.ok(baseImage, 'the base image is in the registry');
  const baseLayers = (JSON.parse(baseImage!.bytes.toString()) as { layers: { digest: string }[] }).layers.map((l) => l.digest);
  assert.equal(ia.layers.slice(0, -1), baseLayers);
  assert.match(b.built.buildLogs, new RegExp(`base layer ${baseLayers[0]!.slice(0, 19)} \\([^)]*\\): mounted from ${base.repository}`));
  assert.not.match(b.built.buildLogs, /base layer [^\n]*uploaded/);

  // the image config: runnable on its own as nobody, with the bootstrap, and no wall-clock time
  const c = ia.config;
  assert.is(c.config.User, '65534:65534');
  assert.equal(c.config.Cmd, ['node', '/app/.containerpub/bootstrap.mjs']);
  assert.is(c.config.Entrypoint, null);
  assert.is(c.config.WorkingDir, '/app');
  assert.equal(
    [c.config.Labels['containerpub.runtime'], c.config.Labels['containerpub.function'], c.config.Labels['containerpub.version']],
    ['node', a.id, '1'],
  );
  assert.ok(c.config.Env.some((e: string) => e.startsWith('PATH=')), "the base's environment is kept");
  assert.is(c.created, '1970-01-01T00:00:00Z');
  assert.equal(c.rootfs.diff_ids.length, ia.layers.length);

  const res = await api.post(`/api/functions/${b.id}/invoke`, { n: 21 });
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.result, { doubled: 42, uid: 65534, cwd: '/app' });
});

test('run by hand: removed from the engine, pulled from the registry and run with docker run -i, it prints the result', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'by-hand', await makeNodeFunction(handler.replace('doubled', 'byHand')), 60_000);
  assert.is(d.built.status, 'active', `${d.built.error}\n${d.built.buildLogs}`);
  deployed.push({ api, id: d.id });
  const tag = d.built.imageTag as string;
  // No instance may hold the image while it is removed. The pre-warm its activation triggered may
  // start after a drop, even after a moment with no container of it (the route reload that starts
  // it is asynchronous), and then the engine refuses the removal: drop and remove until it takes.
  await waitFor('the image removed from the engine', async () => {
    await tp.invoker.manager.dropFunction(d.id);
    await run('docker', ['rmi', tag]);
    return true;
  });
  assert.not.ok(await docker.getImage(tag).inspect().then(() => true, () => false), 'gone from the engine');

  await run('docker', ['pull', tag]);
  const inspect = await docker.getImage(tag).inspect();
  assert.is(inspect.Config.User, '65534:65534');
  assert.equal(inspect.Config.Cmd, ['node', '/app/.containerpub/bootstrap.mjs']);
  const out = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = execFile('docker', ['run', '-i', '--rm', tag], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') reject(err);
      else resolve({ code: (err as { code?: number } | null)?.code ?? 0, stdout, stderr });
    });
    ignoreClosedStdin(child);
    child.stdin!.end(JSON.stringify({ n: 5 }));
  });
  assert.is(out.code, 0, out.stderr);
  assert.equal(JSON.parse(out.stdout.trim()), { ok: true, result: { byHand: 10, uid: 65534, cwd: '/app' } });
});

test('dependencies layer by hand: the same install key gives the same layer (cached, then mounted) while the function layer changes', async () => {
  const root = path.join(tp.dataDir, 'deps-test');
  const nodeModulesDir = path.join(root, 'node_modules');
  fs.mkdirSync(path.join(nodeModulesDir, 'tiny-shout'), { recursive: true });
  fs.writeFileSync(path.join(nodeModulesDir, 'tiny-shout', 'package.json'), JSON.stringify({ name: 'tiny-shout', version: '1.0.0', main: 'index.js' }));
  fs.writeFileSync(path.join(nodeModulesDir, 'tiny-shout', 'index.js'), "module.exports = (s) => s.toUpperCase() + '!';\n");
  const dependencies = { nodeModulesDir, key: randomBytes(32).toString('hex') };
  const functionId = `images-test-${randomBytes(4).toString('hex')}`;

  const buildVersion = async (version: number) => {
    const lines: string[] = [];
    const input: BuildInput = {
      functionId,
      deploymentId: randomUUID(),
      version,
      sourceDir: writeSourceDir(root, {
        'package.json': JSON.stringify({ name: 'fn', type: 'module', dependencies: { 'tiny-shout': '1.0.0' } }),
        'index.mjs': `import shout from 'tiny-shout';\nexport default async (e) => ({ version: ${version}, said: shout(e.say) });\n`,
      }),
      function: { kind: 'node', entry: 'index.mjs' },
      log: (line) => lines.push(line),
      signal: new AbortController().signal,
      dependencies,
    };
    const { imageTag } = await driver.build(input);
    driverBuilt.push({ functionId, version, imageTag });
    return { imageTag, log: lines.join('\n'), deploymentId: input.deploymentId };
  };
  const v1 = await buildVersion(1);
  const v2 = await buildVersion(2);
  assert.match(v1.log, /dependencies layer sha256:[0-9a-f]{64} \([^)]*\): written in \d+ ms and cached/);
  assert.match(v2.log, /dependencies layer sha256:[0-9a-f]{64} \([^)]*\): from the cache/);
  assert.match(v2.log, new RegExp(`dependencies layer sha256:[0-9a-f]{12} \\([^)]*\\): mounted from ${repoOf(functionId, 1)}`), v2.log);

  const [i1, i2] = [await imageOf(repoOf(functionId, 1)), await imageOf(repoOf(functionId, 2))];
  assert.is(i1.layers.length, i2.layers.length);
  assert.is(i2.layers.at(-2), i1.layers.at(-2), 'the dependencies layer is the same');
  assert.is.not(i2.layers.at(-1), i1.layers.at(-1), 'the function layer changed with the code');
  assert.match(i2.config.history.at(-2).created_by, /node_modules/);
  // that the image runs and imports the package is the end-to-end test's below
});

test('dependencies end to end: npm ci at build time becomes its own layer, the same digest after a code-only change', async () => {
  const api = await tp.newUser();
  const ESM = { main: 'index.mjs', type: 'module' };
  const withShout = (tag: string) =>
    makeTarGz([
      { name: 'package.json', content: npm.packageJson({ shout: '2.0.0' }, 'fn', ESM) },
      { name: 'package-lock.json', content: npm.lockfile({ shout: '2.0.0' }) },
      { name: 'index.mjs', content: `import shout from 'shout';\nexport default async (e) => ({ tag: ${JSON.stringify(tag)}, said: shout(e.say) });` },
    ]);
  const v1 = await deployAndBuild(api, 'shouter', await withShout('v1'), 60_000);
  assert.is(v1.built.status, 'active', `${v1.built.error}\n${v1.built.buildLogs}`);
  deployed.push({ api, id: v1.id });
  const v2 = await deployAndBuild(api, 'shouter', await withShout('v2'), 60_000);
  assert.is(v2.built.status, 'active', `${v2.built.error}\n${v2.built.buildLogs}`);
  assert.match(v2.built.buildLogs, /dependencies layer sha256:[0-9a-f]{64} \([^)]*\): from the cache/);
  assert.match(v2.built.buildLogs, new RegExp(`dependencies layer sha256:[0-9a-f]{12} \\([^)]*\\): mounted from ${repoOf(v1.id, 1)}`));

  const [i1, i2] = [await imageOf(repoOf(v1.id, 1)), await imageOf(repoOf(v1.id, 2))];
  const base = baseRegistryName(BASE_IMAGE, (await docker.getImage(BASE_IMAGE).inspect()).Id);
  const baseCount = (JSON.parse((await registry.getManifest(base.repository, base.tag))!.bytes.toString()) as { layers: unknown[] }).layers.length;
  assert.is(i1.layers.length, baseCount + 2, 'base, dependencies, function');
  assert.is(i2.layers.at(-2), i1.layers.at(-2), 'the same dependencies layer');
  assert.is.not(i2.layers.at(-1), i1.layers.at(-1));
  const res = await api.post(`/api/functions/${v1.id}/invoke`, { say: 'hey' });
  assert.equal(res.body.result, { tag: 'v2', said: 'HEY!' });
});

test('no registry: the same kind of image is docker-loaded into the engine, and runs', async () => {
  const local = await startTestPlatform({ RUNTIME_DRIVER: 'docker', FUNCTION_BASE_IMAGE: BASE_IMAGE, CLEANUP_CRON: 'off' }, { runner: true });
  assert.ok(local, 'a second platform without REGISTRY');
  try {
    const api = await local!.newUser();
    const d = await deployAndBuild(api, 'loaded', await makeNodeFunction(handler), 60_000);
    assert.is(d.built.status, 'active', `${d.built.error}\n${d.built.buildLogs}`);
    assert.is(d.built.imageTag, `function-${d.id}-v1:latest`);
    assert.match(d.built.buildLogs, /loaded function-\S+ \(image sha256:[0-9a-f]{64}\) into the engine/);
    assert.not.match(d.built.buildLogs, /^Step \d|pushed /m);
    const inspect = await docker.getImage(d.built.imageTag).inspect();
    assert.is(inspect.Config.User, '65534:65534');
    assert.is(inspect.Config.Labels['containerpub.runtime'], 'node');
    const res = await api.post(`/api/functions/${d.id}/invoke`, { n: 4 });
    assert.equal(res.body.result, { doubled: 8, uid: 65534, cwd: '/app' });
    assert.is((await api.del(`/api/functions/${d.id}`)).status, 204);
    assert.not.ok(await docker.getImage(d.built.imageTag).inspect().then(() => true, () => false), 'deleted with its function');
  } finally {
    await local?.close();
  }
});

test.run();
