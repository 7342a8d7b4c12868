// The runner and invocation end to end with the process driver (docker: runner-docker.test.ts):
// deploy → validate → build → activate → invoke; rollback; failures that never touch what is live.
import fs from 'node:fs';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { assertUsageAgrees } from './support/usage.ts';
import { makeNodeFunction, makeTarGz, zeroFileTarGzStream } from './support/archives.ts';
import { declaration, deployAndBuild, waitForBuild, waitForInvocation } from './support/flows.ts';
import { gzipSync } from 'node:zlib';

const t = await startTestPlatform({ FUNCTION_TIMEOUT_MS: '3000' }, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

const versioned = (tag: string) =>
  makeNodeFunction(`export default async (event, context) => ({ tag: ${JSON.stringify(tag)}, event, context });`);

const flow = suite('build and invoke');

flow('deploy → build → active → invoke answers from the live version with its context', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'hello', await versioned('v1'));
  assert.is(d.built.status, 'active', d.built.error ?? '');
  assert.is(d.built.isActive, true);
  assert.match(d.built.buildLogs, /handler index\.mjs/);
  const res = await api.post(`/api/functions/${d.id}/invoke`, { name: 'ada' });
  assert.is(res.status, 200, JSON.stringify(res.body));
  assert.is(res.body.result.tag, 'v1');
  assert.equal(res.body.result.event, { name: 'ada' });
  assert.is(res.body.version, 1);
  assert.is(res.body.deploymentId, d.deploymentId);
  assert.type(res.body.durationMs, 'number');
  assert.is(res.headers.get('x-function-version'), '1');
  assert.equal(
    { ...res.body.result.context, requestId: typeof res.body.result.context.requestId },
    { functionId: d.id, version: 1, deploymentId: d.deploymentId, instanceId: res.body.result.context.instanceId, requestId: 'string' },
  );
  assert.is(res.body.result.context.requestId, res.body.requestId);
  assert.match(res.body.result.context.instanceId, /^i-[0-9a-f]{12}$/);
  // the instance that passed the readiness check is the one that answered: the runner and the API
  // share this process, so the version went live warm, with one instance started in all
  const kept = /readiness check passed: ready in \d+ ms; instance (i-[0-9a-f]{12}) stays/.exec(d.built.buildLogs);
  assert.ok(kept, d.built.buildLogs);
  assert.is(res.body.result.context.instanceId, kept[1]);
  assert.equal((await api.get(`/api/functions/${d.id}/instances`)).body.instances.map((i: any) => i.id), [kept[1]]);
  const events = (await api.get(`/api/functions/${d.id}/logs`)).body.logs.map((l: any) => l.event);
  assert.equal(events, ['activated', 'build_succeeded', 'build_started', 'upload_completed', 'deploy_requested']);
});

flow('v2 serves once built; rollback makes the very next invoke answer from v1', async () => {
  const api = await tp.newUser();
  const v1 = await deployAndBuild(api, 'roll', await versioned('v1'));
  const v2 = await deployAndBuild(api, 'roll', await versioned('v2'));
  assert.is(v2.built.status, 'active');
  assert.is((await api.post(`/api/functions/${v1.id}/invoke`, {})).body.result.tag, 'v2');
  const rb = await api.post(`/api/functions/${v1.id}/rollback`, { version: 1 });
  assert.is(rb.status, 200);
  const after = await api.post(`/api/functions/${v1.id}/invoke`, {});
  assert.is(after.body.result.tag, 'v1');
  assert.is(after.headers.get('x-function-version'), '1');
  // ?version= runs a built version that is not live, without changing what is live
  const canary = await api.post(`/api/functions/${v1.id}/invoke?version=2`, {});
  assert.is(canary.status, 200);
  assert.is(canary.body.result.tag, 'v2');
  assert.is((await api.get(`/api/functions/${v1.id}`)).body.activeVersion, 1);
});

flow('the artifact is unpacked per version under DATA_DIR/artifacts and DELETE removes it', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'gone', await versioned('v1'));
  const dir = path.join(tp.dataDir, 'artifacts', d.id, 'v1');
  assert.ok(fs.existsSync(path.join(dir, 'index.mjs')));
  assert.is((await api.del(`/api/functions/${d.id}`)).status, 204);
  assert.not.ok(fs.existsSync(dir));
});

flow('a v2 build that finishes after the user chose v1 does not take over', async () => {
  const api = await tp.newUser();
  const v1 = await deployAndBuild(api, 'intent', await versioned('v1'));
  // v2 is requested (its intent is now), the user then says "stay on v1", then v2 finishes building
  const archive = await versioned('v2');
  const deploy = await api.post('/api/functions/deploy', { name: 'intent', ...declaration(archive) });
  await fetch(deploy.body.upload.url, { method: 'PUT', headers: deploy.body.upload.headers, body: archive });
  assert.is((await api.post(`/api/functions/${v1.id}/rollback`, { version: 1 })).status, 200);
  assert.is((await api.post(`/api/functions/${v1.id}/deployments/2/complete`)).status, 202);
  const built = await waitForBuild(api, v1.id, 2);
  assert.is(built.status, 'active', 'v2 is built...');
  assert.is(built.isActive, false, '...but not live');
  assert.is((await api.post(`/api/functions/${v1.id}/invoke`, {})).body.result.tag, 'v1');
  const events = (await api.get(`/api/functions/${v1.id}/logs?version=2`)).body.logs.map((l: any) => l.event);
  assert.ok(events.includes('activation_skipped'));
});

flow('a runner in the same process is woken when a build is queued, not at its next poll', async () => {
  // (on SQLite only the in-process wake-up can do it; on PostgreSQL NOTIFY arrives as well)
  const idle = await startTestPlatform({ RUNNER_POLL_MS: '600000' }, { runner: true });
  try {
    const api = await idle!.newUser();
    // the poll would come in ten minutes; only the in-process wake-up can start these in time
    for (const v of [1, 2]) {
      const d = await deployAndBuild(api, 'prompt', await versioned(`v${v}`), 20_000);
      assert.is(d.built.status, 'active');
    }
  } finally {
    await idle!.close();
  }
});

const failures = suite('failures keep the live version serving');

async function expectRefused(archive: Buffer, message: RegExp) {
  const api = await tp.newUser();
  const v1 = await deployAndBuild(api, 'victim', await versioned('v1'));
  const bad = await deployAndBuild(api, 'victim', archive);
  assert.is(bad.built.status, 'failed');
  assert.match(bad.built.error, message);
  assert.match(bad.built.buildLogs, message);
  assert.is(bad.built.isActive, false);
  const fn = (await api.get(`/api/functions/${v1.id}`)).body;
  assert.is(fn.activeVersion, 1);
  const res = await api.post(`/api/functions/${v1.id}/invoke`, {});
  assert.is(res.status, 200);
  assert.is(res.body.result.tag, 'v1');
  const events = (await api.get(`/api/functions/${v1.id}/logs?version=2`)).body.logs.map((l: any) => l.event);
  assert.ok(events.includes('build_failed'));
}

const files = [{ name: 'index.mjs', content: 'export default async () => 1;' }];
const cases: [string, () => Promise<Buffer>, RegExp][] = [
  ['not gzip', async () => Buffer.from('just some text, not an archive'), /not gzip/],
  ['gzip but not tar', async () => gzipSync(Buffer.from('hello '.repeat(200))), /not a tar/],
  ['absolute path', () => makeTarGz([...files, { name: '/etc/evil', content: 'x' }]), /absolute/],
  ['.. traversal', () => makeTarGz([...files, { name: '../evil', content: 'x' }]), /\.\./],
  ['symlink out of the tree', () => makeTarGz([...files, { name: 'link', type: 'symlink', linkname: '../../etc/passwd' }]), /link/],
  ['fifo', () => makeTarGz([...files, { name: 'pipe', type: 'fifo' }]), /fifo/i],
  ['character device', () => makeTarGz([...files, { name: 'null', type: 'character-device' }]), /device/i],
  [
    'more than 5,000 entries',
    () => makeTarGz(Array.from({ length: 5001 }, (_, i) => ({ name: `f${i}.txt`, content: '' }))),
    /5000|5,000|entries/,
  ],
  ['no handler', () => makeTarGz([{ name: 'README.md', content: 'hi' }]), /no handler/],
  ['gzip bomb over 250 MiB unpacked', () => buffer(zeroFileTarGzStream(260 * 1024 * 1024)), /250|limit|unpacked/i],
];
for (const [name, make, message] of cases) {
  failures(`refused: ${name}`, async () => expectRefused(await make(), message));
}

failures('a first version that fails leaves the function with no live version (409 on invoke)', async () => {
  const api = await tp.newUser();
  const bad = await deployAndBuild(api, 'never', Buffer.from('nope'));
  assert.is(bad.built.status, 'failed');
  const res = await api.post(`/api/functions/${bad.id}/invoke`, {});
  assert.is(res.status, 409);
  assert.is(res.body.error.code, 'no_active_deployment');
});

const invoke = suite('invocation');

invoke('a throwing function is a 502 function_error with its message; the failure is recorded', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'thrower', await makeNodeFunction(`export default async () => { console.log('about to fail'); throw new Error('kaboom 42'); };`));
  const res = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(res.status, 502);
  assert.is(res.body.error.code, 'function_error');
  assert.match(res.body.error.message, /kaboom 42/);
  const inv = await waitForInvocation(api, d.id, res.body.error.details.requestId);
  assert.is(inv.outcome, 'error');
  assert.match(inv.logs, /about to fail/);
});

invoke('over FUNCTION_TIMEOUT_MS: 504 and the process is gone', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'sleeper', await makeNodeFunction(`export default () => new Promise(() => { setInterval(() => {}, 1000); });`));
  const res = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(res.status, 504);
  assert.is(res.body.error.code, 'function_timeout');
  const inv = await waitForInvocation(api, d.id, res.body.error.details.requestId);
  assert.is(inv.outcome, 'timeout');
});

invoke('a function that prints a lot still returns its result; its logs are kept, bounded', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(
    api,
    'chatty',
    await makeNodeFunction(`export default async () => { for (let i = 0; i < 50000; i++) console.log('line ' + i + ' ' + 'x'.repeat(80)); process.stdout.write('{"fake": "result"}\\n'); return { ok: true }; };`),
  );
  const res = await api.post(`/api/functions/${d.id}/invoke`, {});
  assert.is(res.status, 200, JSON.stringify(res.body).slice(0, 300));
  assert.equal(res.body.result, { ok: true });
  const inv = await waitForInvocation(api, d.id, res.body.requestId);
  assert.is(inv.outcome, 'ok');
  assert.match(inv.logs, /line 49999/);
  assert.ok(inv.logs.length < 20_000);
});

invoke('?version: unknown 404, not built 409, bad 400; bad event JSON 400; event over 6 MiB 413', async () => {
  const api = await tp.newUser();
  const d = await deployAndBuild(api, 'picky', await versioned('v1'));
  await api.post('/api/functions/deploy', { name: 'picky', ...declaration() }); // v2 pending_upload
  assert.is((await api.post(`/api/functions/${d.id}/invoke?version=9`, {})).status, 404);
  const pending = await api.post(`/api/functions/${d.id}/invoke?version=2`, {});
  assert.is(pending.status, 409);
  assert.is(pending.body.error.code, 'version_not_built');
  assert.is((await api.post(`/api/functions/${d.id}/invoke?version=abc`, {})).status, 400);
  const bad = await api.request('POST', `/api/functions/${d.id}/invoke`, { body: '{"a":', headers: { 'content-type': 'application/json' } });
  assert.is(bad.status, 400);
  const huge = await api.request('POST', `/api/functions/${d.id}/invoke`, {
    body: JSON.stringify({ blob: 'x'.repeat(6 * 1024 * 1024 + 10) }),
    headers: { 'content-type': 'application/json' },
  });
  assert.is(huge.status, 413);
  const empty = await api.request('POST', `/api/functions/${d.id}/invoke`);
  assert.is(empty.status, 200);
  const other = await tp.newUser();
  assert.is((await other.post(`/api/functions/${d.id}/invoke`, {})).status, 404);
});

invoke.after(() => tp.close());
flow.run();
failures.run();
invoke('the usage rows the quotas read agree with a recount, after the builds, failures and activations above', async () => {
  const counted = await assertUsageAgrees(tp.platform.db.knex);
  assert.ok(counted.functions > 0, 'there were functions to count');
  assert.ok(counted.archiveBytes > 0, 'and stored archives');
});

invoke.run();
