// The instance a readiness check started, handed to the pool of the same process
// (shared/runtime/ready-instances.ts), against real child processes of the process backend: taken
// when the pool would start exactly that one, stopped when no pool would, when nobody takes it in
// time, and when the last pool of the process closes.
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InstanceManager, type InstanceTarget } from '../../shared/runtime/pool.ts';
import { checkReadiness } from '../../shared/runtime/readiness.ts';
import { newInstanceId, waitReady } from '../../shared/runtime/instance.ts';
import { ReadyInstances, readyInstancesOf, type InstanceShape } from '../../shared/runtime/ready-instances.ts';
import type { InstanceSpec } from '../../shared/runtime/types.ts';
import { alive, poolSettings, processFixture } from '../support/process-fixture.ts';
import { waitFor } from '../support/services.ts';

const fx = processFixture();
const managers: InstanceManager[] = [];

test.after(async () => {
  for (const m of managers) await m.close(0);
  fx.cleanup();
});

/** A handler whose module writes its process id where PID_FILE says, as it loads. */
const PID_WRITER = `import fs from 'node:fs';
fs.writeFileSync(process.env.PID_FILE, String(process.pid));
export default async (event, context) => ({ pid: process.pid, instanceId: context.instanceId });`;

/** A built version, and the spec a start of it takes (the pool's settings, its own PID_FILE). */
async function version(fixture = fx) {
  const built = await fixture.build({ 'index.mjs': PID_WRITER });
  const pidFile = path.join(fixture.root, `pid-${randomUUID()}`);
  const settings = poolSettings({ env: { PID_FILE: pidFile } });
  const target: InstanceTarget = { functionId: built.functionId, deploymentId: built.deploymentId, version: built.version, imageTag: null };
  const shape: InstanceShape = { ...target, memoryMb: settings.memoryMb, env: settings.env, network: settings.network };
  const pid = () => Number(fs.readFileSync(pidFile, 'utf8'));
  return { target, settings, shape, spec: (): InstanceSpec => ({ ...shape, instanceId: newInstanceId() }), pid };
}

function manager(settings: ReturnType<typeof poolSettings>, onStartEnded?: (how: string, outcome: string) => void) {
  const m = new InstanceManager(fx.driver.instances, { maxTotal: 16, settings: () => settings, onStartEnded });
  managers.push(m);
  return m;
}

test('the readiness check’s instance becomes the pool’s first one: no second start, and it answers warm', async () => {
  const v = await version();
  const ended: string[] = [];
  const m = manager(v.settings, (how, outcome) => ended.push(`${how} ${outcome}`));
  const spec = v.spec();
  const checked = await checkReadiness(fx.driver, spec, 10_000);
  assert.is(checked.kept, true);
  const checkedPid = v.pid();
  assert.ok(alive(checkedPid), 'the checked instance still runs');
  m.prewarm(v.target);
  await waitFor('the pre-warmed instance to be idle', () => m.list(v.target.functionId)[0]?.state === 'idle', { timeoutMs: 10_000 });
  const out = await m.invoke(v.target, { requestId: randomUUID(), body: '{}' });
  assert.ok(out.ok, JSON.stringify(out));
  if (!out.ok) return;
  assert.equal(out.result, { pid: checkedPid, instanceId: spec.instanceId });
  assert.is(out.cold, false);
  assert.equal(m.list(v.target.functionId).map((i) => i.id), [spec.instanceId]);
  assert.is(readyInstancesOf(fx.driver.instances).size, 0);
  assert.equal(ended, ['adopted ready'], 'one start, and it took the checked instance');
});

test('no pool in the process (a runner of its own): the check stops its instance', async () => {
  // a driver of its own: no InstanceManager was ever made over its backend
  const alone = processFixture();
  try {
    const v = await version(alone);
    const checked = await checkReadiness(alone.driver, v.spec(), 10_000);
    assert.is(checked.kept, false);
    assert.not.ok(alive(v.pid()), 'stopped when the check returned');
    assert.is(readyInstancesOf(alone.driver.instances).size, 0);
  } finally {
    alone.cleanup();
  }
});

test('a start that differs takes nothing, and an instance nobody takes is stopped after its time', async () => {
  const v = await version();
  const ready = new ReadyInstances(500);
  const endAdoption = ready.addAdopter();
  const instance = await fx.driver.instances.start(v.spec());
  await waitReady(instance, 10_000, v.settings.memoryMb);
  assert.ok(ready.park(v.shape, instance));
  // another environment, memory, network or version: the pool would start another instance
  assert.is(ready.take({ ...v.shape, env: { PID_FILE: 'elsewhere' } }), null);
  assert.is(ready.take({ ...v.shape, memoryMb: v.shape.memoryMb * 2 }), null);
  assert.is(ready.take({ ...v.shape, network: 'outbound' }), null);
  assert.is(ready.take({ ...v.shape, deploymentId: randomUUID() }), null);
  const pid = v.pid();
  await waitFor('the instance nobody took to stop', () => !alive(pid) && ready.size === 0, { timeoutMs: 10_000 });
  assert.is(ready.take(v.shape), null);
  await endAdoption();
});

test('bounded, forgets one that dies, and the last pool leaving stops what is parked', async () => {
  const ready = new ReadyInstances(60_000, 2);
  const early = await version();
  const unwanted = await fx.driver.instances.start(early.spec());
  assert.not.ok(ready.park(early.shape, unwanted), 'no pool: not parked');
  await unwanted.kill();
  const endFirst = ready.addAdopter();
  const endSecond = ready.addAdopter();
  const vs = [await version(), await version(), await version()];
  const started = await Promise.all(vs.map(async (v) => {
    const instance = await fx.driver.instances.start(v.spec());
    await waitReady(instance, 10_000, v.settings.memoryMb);
    return instance;
  }));
  assert.ok(ready.park(vs[0]!.shape, started[0]!));
  assert.ok(ready.park(vs[1]!.shape, started[1]!));
  assert.not.ok(ready.park(vs[2]!.shape, started[2]!), 'at most two parked');
  await started[2]!.kill();
  // one dies while parked: it is forgotten, not handed out
  process.kill(vs[0]!.pid(), 'SIGKILL');
  await waitFor('the dead one to be forgotten', () => ready.size === 1, { timeoutMs: 5_000 });
  assert.is(ready.take(vs[0]!.shape), null);
  // one pool of two leaves: the parked one stays for the other
  await endFirst();
  assert.is(ready.size, 1);
  assert.ok(alive(vs[1]!.pid()));
  await endSecond();
  assert.is(ready.size, 0);
  assert.not.ok(alive(vs[1]!.pid()), 'stopped once no pool is left');
  assert.not.ok(ready.park(vs[1]!.shape, started[1]!), 'no pool left: nothing is parked');
});

test.run();
