// BUILD_TIMEOUT_MS over a real Dockerfile build that never ends (docker driver, real engine and
// registry): the build fails with "timed out after …", its build container is gone, and the runner's
// only slot is free for the next build, which goes live.
import Docker from 'dockerode';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';
import { makeNodeFunction, makeTarGz } from './support/archives.ts';
import { deployPresigned, waitForBuild } from './support/flows.ts';
import { TEST_BASE_IMAGE, TEST_REGISTRY, dockerBuildServices, waitFor } from './support/services.ts';

const REGISTRY = TEST_REGISTRY;
const BASE_IMAGE = TEST_BASE_IMAGE;
const TIMEOUT_MS = 8000;
if (!(await dockerBuildServices())) process.exit(0);
const docker = new Docker();

const t = await startTestPlatform(
  {
    RUNTIME_DRIVER: 'docker',
    REGISTRY,
    FUNCTION_BASE_IMAGE: BASE_IMAGE,
    CLEANUP_CRON: 'off',
    BUILD_TIMEOUT_MS: String(TIMEOUT_MS),
    // one slot: the next build can only run once the hung one has let go of it
    RUNNER_CONCURRENCY: '1',
  },
  { runner: true },
);
if (!t) process.exit(0);
const tp = t as TestPlatform;

// exec form: the base image has no shell
const HANG = 'setTimeout(()=>{},3600e3)';
const hangingContainers = async () =>
  (await docker.listContainers({ all: true })).filter((c) => c.Command.includes(HANG) && c.State !== 'exited' && c.State !== 'dead');

const timeouts = suite('build time limit');

timeouts('a Dockerfile RUN that never ends fails at BUILD_TIMEOUT_MS, leaves no container, and frees the slot for the next build', async () => {
  const api = await tp.newUser();
  const hang = await deployPresigned(
    api,
    'hangs',
    await makeTarGz([{ name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\nRUN ["node","-e","${HANG}"]\n` }]),
  );
  const next = await deployPresigned(api, 'after-it', await makeNodeFunction('export default async () => ({ ok: "next" });'));
  // the hung build really runs its step (its container exists) before the limit ends it
  await waitFor('the hanging build step to run', async () => (await hangingContainers()).length > 0, { timeoutMs: 30_000, intervalMs: 100 });
  // The next build gets a generous limit (the runner reads it per build; the hung one keeps its
  // own): a Node build on a loaded CI host can take longer than the short limit this test needs.
  tp.platform.config.runner.buildTimeoutMs = 120_000;

  const failed = await waitForBuild(api, hang.id, 1, TIMEOUT_MS + 30_000);
  assert.is(failed.status, 'failed');
  assert.match(failed.error, new RegExp(`^timed out after ${TIMEOUT_MS / 1000} s`));
  assert.match(failed.buildLogs, /build failed: timed out after/);
  assert.is(failed.attempts, 1, 'the function\'s own failure: not retried');
  assert.is(failed.nextAttemptAt, null);
  await waitFor('no build container left running', async () => (await hangingContainers()).length === 0, { timeoutMs: 30_000, intervalMs: 200 });

  const built = await waitForBuild(api, next.id, 1, 120_000);
  assert.is(built.status, 'active', `${built.error}\n${built.buildLogs}`);
  assert.is(built.isActive, true);
  const res = await api.post(`/api/functions/${next.id}/invoke`, {});
  assert.equal(res.body.result, { ok: 'next' });

  // the limit was what ended it, and the next build could only start after it (one slot)
  const at = async (deploymentId: string, event: string) =>
    new Date((await tp.platform.db.knex('function_logs').where({ deployment_id: deploymentId, event }).first('created_at')).created_at).getTime();
  const hungFor = (await at(hang.deploymentId, 'build_failed')) - (await at(hang.deploymentId, 'build_started'));
  assert.ok(hungFor >= TIMEOUT_MS - 50 && hungFor < TIMEOUT_MS + 10_000, `the hung build ended after ${hungFor} ms`);
  assert.ok((await at(next.deploymentId, 'build_started')) >= (await at(hang.deploymentId, 'build_failed')));
});

timeouts.after(() => tp.close());
timeouts.run();
