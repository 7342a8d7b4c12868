// Warm instances against real child processes (the process backend): reuse, capacity and the FIFO
// queue, faults that stay inside one instance, idle stop, the host-wide cap, several invocations
// at once on one instance, crash loops, shutdown and orphans left by a killed platform process.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CRASH_LOOP_COUNT,
  CapacityError,
  InstanceManager,
  ShuttingDownError,
  type InstanceManagerOptions,
  type CrashLoop,
  type InstanceTarget,
  type InvokeOutcome,
  type PoolSettings,
} from '../../shared/runtime/pool.ts';
import { alive, poolSettings, processFixture } from '../support/process-fixture.ts';
import { waitFor } from '../support/services.ts';

const fx = processFixture();
const managers: InstanceManager[] = [];

test.after(async () => {
  for (const m of managers) await m.close(0);
  fx.cleanup();
});

function manager(
  over: Partial<PoolSettings> = {},
  opts: Pick<InstanceManagerOptions, 'onCrashLoop' | 'onStartEnded'> & { maxTotal?: number } = {},
) {
  const m = new InstanceManager(fx.driver.instances, {
    maxTotal: opts.maxTotal ?? 16,
    settings: () => poolSettings(over),
    onCrashLoop: opts.onCrashLoop,
    onStartEnded: opts.onStartEnded,
  });
  managers.push(m);
  return m;
}

async function target(code: string): Promise<InstanceTarget> {
  const built = await fx.build({ 'index.mjs': code });
  return { functionId: built.functionId, deploymentId: built.deploymentId, version: built.version, imageTag: null };
}

const call = (m: InstanceManager, t: InstanceTarget, event: unknown = {}) =>
  m.invoke(t, { requestId: randomUUID(), body: JSON.stringify(event) });

const resultOf = (out: InvokeOutcome) => {
  if (!out.ok) throw new Error(`${out.kind}: ${out.message}`);
  return out.result as any;
};

/** A handler that reports its instance, its module state and when it ran (ms since the epoch). */
const WORKER = `let count = 0;
export default async (event, context) => {
  const start = Date.now();
  count++;
  if (event.sleep) await new Promise((r) => setTimeout(r, event.sleep));
  if (event.crash) process.exit(7);
  if (event.hang) return new Promise(() => {});
  return { count, pid: process.pid, instanceId: context.instanceId, start, end: Date.now() };
};`;

test('warm reuse: module state persists; only the first invocation waits for a start', async () => {
  const m = manager();
  const t = await target(WORKER);
  const outs = [];
  for (let i = 0; i < 5; i++) outs.push(await call(m, t));
  assert.equal(outs.map((o) => resultOf(o).count), [1, 2, 3, 4, 5]);
  assert.equal(outs.map((o) => o.cold), [true, false, false, false, false]);
  assert.is(new Set(outs.map((o) => o.instanceId)).size, 1);
  const [info] = m.list(t.functionId);
  assert.is(info!.state, 'idle');
  assert.is(info!.invocations, 5);
  assert.is(info!.version, 1);
  assert.ok(info!.lastUsedAt);
});

test('capacity: 8 concurrent 300 ms invocations, at most 2 instances, run in 4 waves', async () => {
  const m = manager({ maxInstances: 2 });
  const t = await target(WORKER);
  const outs = (await Promise.all(Array.from({ length: 8 }, () => call(m, t, { sleep: 300 })))).map(resultOf);
  const byInstance = new Map<string, { start: number; end: number }[]>();
  for (const r of outs) byInstance.set(r.instanceId, [...(byInstance.get(r.instanceId) ?? []), r]);
  assert.is(byInstance.size, 2, 'two instances served everything');
  // how the 8 split between them depends on which starts first (4/4, or 5/3 when one instance's
  // cold start is slower): the waves are what is promised
  for (const [, runs] of byInstance) {
    runs.sort((a, b) => a.start - b.start);
    for (let i = 1; i < runs.length; i++) assert.ok(runs[i]!.start >= runs[i - 1]!.end, 'one at a time per instance');
  }
  // at no moment did more than two run at once (a sweep over start and end times)
  const events = outs.flatMap((r) => [[r.start, 1], [r.end, -1]] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let running = 0;
  let most = 0;
  for (const [, delta] of events) most = Math.max(most, (running += delta));
  assert.is(most, 2, `${most} ran at once`);
  // 8 × 300 ms on two instances, one at a time each: 4 waves at least
  const span = Math.max(...outs.map((r) => r.end)) - Math.min(...outs.map((r) => r.start));
  assert.ok(span >= 4 * 300, `all 8 ran within ${span} ms: fewer than 4 waves`);
});

test('the queue is bounded in time and in length: 429-style CapacityError with a retry hint', async () => {
  const m = manager({ maxInstances: 1, queueMs: 100 });
  const t = await target(WORKER);
  await call(m, t); // warm
  const busy = call(m, t, { sleep: 1000 });
  const queued = await call(m, t).then(() => null, (err) => err);
  assert.instance(queued, CapacityError);
  assert.match(queued.message, /at capacity .*no instance was free within 100 ms/);
  assert.ok(queued.retryAfterSeconds >= 1);
  assert.ok((await busy).ok);

  const short = manager({ maxInstances: 1, queueMax: 1 });
  await call(short, t);
  const hold = call(short, t, { sleep: 500 });
  const queuedOne = call(short, t);
  const refused = await call(short, t).then(() => null, (err) => err);
  assert.instance(refused, CapacityError);
  assert.match(refused.message, /1 requests are already waiting/);
  assert.ok((await hold).ok && (await queuedOne).ok, 'the one that could wait was served');
});

test('a crash fails only its invocation; the next one gets a fresh instance', async () => {
  const m = manager();
  const t = await target(WORKER);
  const first = await call(m, t);
  const crashed = await call(m, t, { crash: true });
  assert.ok(!crashed.ok && crashed.kind === 'crashed', JSON.stringify(crashed));
  if (!crashed.ok) assert.match(crashed.message, /exited with code 7/);
  const next = await call(m, t);
  assert.ok(next.ok);
  assert.is.not(next.instanceId, first.instanceId);
  assert.is(resultOf(next).count, 1, 'a fresh module');
});

test('a timeout kills only its instance; the other instance keeps serving', async () => {
  const m = manager({ maxInstances: 2, timeoutMs: 400 });
  const t = await target(WORKER);
  const [hung, quick] = await Promise.all([call(m, t, { hang: true }), call(m, t, { sleep: 50 })]);
  assert.ok(!hung.ok && hung.kind === 'timeout', JSON.stringify(hung));
  assert.ok(quick.ok);
  const left = m.list(t.functionId).map((i) => i.id);
  assert.ok(left.includes(quick.instanceId!), 'the other instance is untouched');
  assert.not.ok(left.includes(hung.instanceId!), 'the stuck instance is gone');
  const after = await call(m, t);
  assert.ok(after.ok);
});

test('idle instances stop after idleMs: the version scales to zero, the process is gone', async () => {
  const m = manager({ idleMs: 150 });
  const t = await target(WORKER);
  const { pid } = resultOf(await call(m, t));
  await waitFor('the idle instance to stop', () => m.list(t.functionId).length === 0, { timeoutMs: 5_000 });
  await waitFor('its process to exit', () => !alive(pid), { timeoutMs: 5_000 });
  assert.is(m.size, 0);
  const again = await call(m, t);
  assert.ok(again.ok && again.cold, 'a cold start after scaling to zero');
});

test('the host-wide cap evicts the least recently used idle instance, or makes the request wait', async () => {
  const m = manager({}, { maxTotal: 1 });
  const a = await target(WORKER);
  const b = await target(WORKER);
  await call(m, a);
  const onB = await call(m, b);
  assert.ok(onB.ok && onB.cold);
  assert.is(m.list(a.functionId).length, 0, "a's idle instance made room");
  assert.is(m.size, 1);
  // b is busy: a waits for it to finish, then b's instance is evicted for a
  const busyB = call(m, b, { sleep: 400 });
  const waitingA = call(m, a);
  const [rb, ra] = await Promise.all([busyB, waitingA]);
  assert.ok(rb.ok && ra.ok);
  assert.ok(resultOf(ra).start >= resultOf(rb).end, 'a ran once b had finished');
  assert.is(m.size, 1);
});

test('concurrency > 1: one instance runs several at once, and each keeps its own logs', async () => {
  const m = manager({ maxInstances: 1, concurrency: 4 });
  const t = await target(`export default async (event) => {
    for (let i = 0; i < 3; i++) {
      console.log('req ' + event.n + ' step ' + i);
      await new Promise((r) => setTimeout(r, 20));
    }
    return event.n;
  };`);
  const outs = await Promise.all([1, 2, 3, 4].map((n) => call(m, t, { n })));
  assert.is(new Set(outs.map((o) => o.instanceId)).size, 1);
  outs.forEach((o, i) => {
    assert.is(resultOf(o), i + 1);
    assert.is(o.logs, [0, 1, 2].map((s) => `req ${i + 1} step ${s}\n`).join(''));
  });
});

test('a crash loop is reported once per window', async () => {
  const loops: CrashLoop[] = [];
  const m = manager({}, { onCrashLoop: (l) => loops.push(l) });
  const t = await target(WORKER);
  for (let i = 0; i < CRASH_LOOP_COUNT + 2; i++) {
    const out = await call(m, t, { crash: true });
    assert.ok(!out.ok && out.kind === 'crashed');
  }
  assert.is(loops.length, 1);
  assert.is(loops[0]!.crashes, CRASH_LOOP_COUNT);
  assert.match(loops[0]!.lastError, /exited with code 7/);
});

test('each start is reported once, as it ended: ready, or failed (a module that throws at import)', async () => {
  const ended: string[] = [];
  const m = manager({}, { onStartEnded: (how, outcome) => ended.push(`${how} ${outcome}`) });
  const good = await target(WORKER);
  assert.ok((await call(m, good)).ok);
  assert.ok((await call(m, good)).ok, 'warm: no second start');
  const bad = await target(`throw new Error('broken at import');\nexport default async () => 1;`);
  const out = await call(m, bad);
  assert.ok(!out.ok && out.kind === 'crashed', JSON.stringify(out));
  assert.equal(ended, ['started ready', 'started failed']);
});

test('prewarm starts one instance ahead of the first request', async () => {
  const m = manager();
  const t = await target(WORKER);
  m.prewarm(t);
  await waitFor('the pre-warmed instance', () => m.list(t.functionId)[0]?.state === 'idle', { timeoutMs: 10_000 });
  const out = await call(m, t);
  assert.ok(out.ok && !out.cold, 'served warm');
});

test('a request that finds a pre-warm still starting waits for it, not for the (tiny) queue limit', async () => {
  const m = manager({ maxInstances: 1, queueMs: 1 });
  const t = await target(WORKER);
  m.prewarm(t);
  const out = await call(m, t);
  assert.ok(out.ok, JSON.stringify(out));
  assert.ok(out.cold, 'it waited for the start');
  assert.is(m.list(t.functionId).length, 1, 'served by the pre-warmed instance');
});

test('close: in-flight and queued invocations finish within the grace, new ones are refused, no process is left', async () => {
  const m = manager({ maxInstances: 1 });
  const t = await target(WORKER);
  const { pid } = resultOf(await call(m, t));
  const running = call(m, t, { sleep: 300 });
  const queued = call(m, t);
  await waitFor('the invocation to be running', () => m.list(t.functionId)[0]?.state === 'busy');
  await m.close(5_000);
  assert.ok((await running).ok, 'the in-flight invocation finished');
  assert.ok((await queued).ok, 'the queued one too');
  assert.not.ok(alive(pid));
  assert.is(m.size, 0);
  assert.not.ok(fs.readdirSync(fx.instanceDir).includes((await running).instanceId!), 'its directory is gone');
  await call(m, t).then(
    () => assert.unreachable('closed'),
    (err) => assert.instance(err, ShuttingDownError),
  );
});

test('orphans: instances of a SIGKILLed platform process are gone, their directories swept', async () => {
  const t = await target(WORKER);
  const script = path.join(fx.root, `orphan-${randomUUID()}.mts`);
  const repo = path.resolve('.');
  fs.writeFileSync(
    script,
    `import { ProcessDriver } from '${repo}/shared/runtime/process-driver.ts';
import { InstanceManager } from '${repo}/shared/runtime/pool.ts';
const driver = new ProcessDriver({ artifactsDir: ${JSON.stringify(fx.artifactsDir)}, instanceDir: ${JSON.stringify(fx.instanceDir)} });
const m = new InstanceManager(driver.instances, { maxTotal: 4, settings: () => (${JSON.stringify(poolSettings())}) });
const out = await m.invoke(${JSON.stringify(t)}, { requestId: 'r', body: '{}' });
console.log(JSON.stringify(out.ok ? out.result : out));
setInterval(() => {}, 1000);`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const { pid, instanceId } = await waitFor('the instance to answer in the other process', () => (out.includes('\n') ? JSON.parse(out) : undefined), { timeoutMs: 20_000 });
  assert.ok(alive(pid));
  assert.ok(fs.readdirSync(fx.instanceDir).includes(instanceId));
  child.kill('SIGKILL');
  // the process backend's instance notices its parent is gone and ends itself; the sweep of the
  // next start removes what is left (here: the directory)
  await waitFor('the orphaned instance to end', () => !alive(pid), { timeoutMs: 5_000 });
  const before = fs.readdirSync(fx.instanceDir);
  const swept = await fx.driver.instances.sweepOrphans();
  assert.is(swept, 0, 'nothing left running to kill');
  assert.equal(
    fs.readdirSync(fx.instanceDir).sort(),
    before.filter((id) => id !== instanceId).sort(),
    'only its directory is swept: the instances of this live process stay',
  );
});

test('an instance whose platform process dies right after spawning it ends itself', async () => {
  const t = await target(WORKER);
  const script = path.join(fx.root, `spawn-and-die-${randomUUID()}.mts`);
  const repo = path.resolve('.');
  const instanceId = `i-${randomUUID().slice(0, 12)}`;
  fs.writeFileSync(
    script,
    `import { ProcessDriver } from '${repo}/shared/runtime/process-driver.ts';
const driver = new ProcessDriver({ artifactsDir: ${JSON.stringify(fx.artifactsDir)}, instanceDir: ${JSON.stringify(fx.instanceDir)} });
await driver.instances.start({ ...${JSON.stringify(t)}, instanceId: ${JSON.stringify(instanceId)}, memoryMb: 128 });
process.exit(0); // gone before the instance has run a line`,
  );
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  const pid = Number(fs.readFileSync(path.join(fx.instanceDir, instanceId, 'pid'), 'utf8'));
  assert.ok(pid > 0);
  await waitFor('the orphaned instance to end itself', () => !alive(pid), { timeoutMs: 5_000 });
});

test.run();
