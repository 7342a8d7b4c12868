// Each version runs, is cleaned up and is deleted only by the runtime driver that built it. The
// platform here runs the process driver; a version "built by docker" is a row saying so (what a
// database shared with a docker deployment holds), since one process cannot run both drivers.
import fs from 'node:fs';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCleanup } from '../shared/domain/retention.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction } from './support/archives.ts';
import { deployAndBuild } from './support/flows.ts';

const t = await startTestPlatform({ KEEP_LAST_N: '1', CLEANUP_CRON: 'off' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;
const db = tp.platform.db.knex;
const fn = (tag: string) => makeNodeFunction(`export default async () => ({ tag: ${JSON.stringify(tag)} });`);
const artifactDir = (id: string, v: number) => path.join(tp.dataDir, 'artifacts', id, `v${v}`);
const row = (id: string, version: number) => db('function_deployments').where({ function_id: id, version }).first();
const setRow = (id: string, version: number, values: Record<string, unknown>) =>
  db('function_deployments').where({ function_id: id, version }).update(values);

const s = suite('versions and their runtime driver');
s.after(() => tp.close());

s('a build records the driver that built it', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'records', await fn('v1'));
  assert.is(d.built.status, 'active');
  assert.is((await row(d.id, 1)).runtime_driver, 'process');
});

s('invoking a version another driver built: 503 driver_mismatch naming both drivers, live or named', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'mismatch', await fn('v1'));
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
  await setRow(d.id, 1, { runtime_driver: 'docker', image_tag: 'function-x-v1:latest' });
  tp.invoker.routes.invalidate(d.id);
  for (const url of [`/api/functions/${d.id}/invoke`, `/api/functions/${d.id}/invoke?version=1`]) {
    const res = await api.post(url, {});
    assert.is(res.status, 503, JSON.stringify(res.body));
    assert.is(res.body.error.code, 'driver_mismatch');
    assert.match(res.body.error.message, 'docker driver');
    assert.match(res.body.error.message, 'process driver');
    assert.equal(res.body.error.details, { version: 1, builtBy: 'docker', running: 'process' });
  }
});

s('rows from before the column: an image tag means docker, none means process', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'legacy', await fn('v1'));
  await setRow(d.id, 1, { runtime_driver: null });
  tp.invoker.routes.invalidate(d.id);
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).status, 200);
  await setRow(d.id, 1, { runtime_driver: null, image_tag: 'function-x-v1:latest' });
  tp.invoker.routes.invalidate(d.id);
  const res = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(res.status, 503);
  assert.is(res.body.error.details.builtBy, 'docker');
});

s('cleanup leaves a version built by another driver as it is and reports an error for it', async () => {
  const api = await tp.newUser();
  const v1 = await deployAndBuild(api, 'cleanme', await fn('v1'));
  await deployAndBuild(api, 'cleanme', await fn('v2'));
  await deployAndBuild(api, 'cleanme', await fn('v3'));
  // v1 "built by docker" (its directory stays, standing in for an image this driver cannot see)
  await setRow(v1.id, 1, { runtime_driver: 'docker' });
  const summary = await runCleanup(tp.platform, tp.driver, { functionName: 'cleanme' });
  assert.is(summary.errors, 1);
  assert.is(summary.versionsArchived, 1, 'v2 (process) is archived as usual');
  const r1 = await row(v1.id, 1);
  assert.is(r1.status, 'active');
  assert.is(r1.image_removed_at, null);
  assert.ok(fs.existsSync(artifactDir(v1.id, 1)));
  const r2 = await row(v1.id, 2);
  assert.is(r2.status, 'archived');
  assert.not.ok(fs.existsSync(artifactDir(v1.id, 2)));
});

s('deleting a function removes what this driver built and leaves the other driver\'s artifact', async () => {
  const api = await tp.newUser();
  const v1 = await deployAndBuild(api, 'deleteme', await fn('v1'));
  await deployAndBuild(api, 'deleteme', await fn('v2'));
  await setRow(v1.id, 1, { runtime_driver: 'docker' });
  const res = await api.del(`/api/functions/${v1.id}`);
  assert.is(res.status, 204, JSON.stringify(res.body));
  assert.ok(fs.existsSync(artifactDir(v1.id, 1)), 'not this driver\'s to remove');
  assert.not.ok(fs.existsSync(artifactDir(v1.id, 2)));
});

s.run();
