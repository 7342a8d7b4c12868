// TurnBatcher (shared/db/turn-batch.ts): the jobs submitted in one turn of the event loop run as
// batches of at most `max`, at most `concurrency` batches at a time, in the order submitted.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { TurnBatcher, type Outcome } from '../../shared/db/turn-batch.ts';

/** A batcher whose batches wait until released, recording each batch and how many ran at once. */
function gated(opts: { max: number; concurrency: number; maxQueued?: number; stalled?: { afterMs: number; concurrency: number } }) {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  let running = 0;
  let mostAtOnce = 0;
  const batcher = new TurnBatcher<number, number>({
    ...opts,
    async run(jobs) {
      batches.push(jobs);
      mostAtOnce = Math.max(mostAtOnce, ++running);
      await new Promise<void>((resolve) => gates.push(resolve));
      running--;
      return jobs.map((j): Outcome<number> => (j < 0 ? { ok: false, err: new Error(`refused ${j}`) } : { ok: true, value: j * 10 }));
    },
  });
  return { batcher, batches, gates, mostAtOnce: () => mostAtOnce };
}

/** Bounded polling: every turn at first, then every millisecond, for 2 s at most. */
async function until(cond: () => boolean) {
  const deadline = performance.now() + 2_000;
  for (let i = 0; !cond(); i++) {
    if (performance.now() > deadline) throw new Error('never happened');
    await new Promise((r) => (i < 100 ? setImmediate(r) : setTimeout(r, 1)));
  }
}

test('one turn of 10 jobs, max 4, two at a time: batches of 4 and 4, then the rest once one is done', async () => {
  const g = gated({ max: 4, concurrency: 2 });
  const answers = Array.from({ length: 10 }, (_, i) => g.batcher.submit(i)!);
  await until(() => g.batches.length === 2);
  assert.equal(g.batches, [[0, 1, 2, 3], [4, 5, 6, 7]]);
  g.gates.shift()!();
  await until(() => g.batches.length === 3);
  assert.equal(g.batches[2], [8, 9]);
  while (g.gates.length > 0 || g.batches.length < 3) {
    await until(() => g.gates.length > 0);
    g.gates.shift()!();
  }
  assert.equal(await Promise.all(answers), [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  assert.is(g.mostAtOnce(), 2);
});

test("a job's own failure rejects it alone; a batch that throws rejects all of its jobs", async () => {
  const g = gated({ max: 8, concurrency: 1 });
  const [a, b, c] = [g.batcher.submit(1)!, g.batcher.submit(-2)!, g.batcher.submit(3)!];
  await until(() => g.gates.length === 1);
  g.gates.shift()!();
  const [oa, ob, oc] = await Promise.allSettled([a, b, c]);
  assert.equal(oa, { status: 'fulfilled', value: 10 });
  assert.match(String((ob as PromiseRejectedResult).reason), /refused -2/);
  assert.equal(oc, { status: 'fulfilled', value: 30 });

  const failing = new TurnBatcher<number, number>({ max: 8, concurrency: 1, run: () => Promise.reject(new Error('the database went away')) });
  const all = await Promise.allSettled([failing.submit(1)!, failing.submit(2)!]);
  assert.equal(all.map((o) => o.status === 'rejected' && String(o.reason.message)), ['the database went away', 'the database went away']);
});

test('a full queue answers null at once: the caller does the job alone', async () => {
  const g = gated({ max: 2, concurrency: 1, maxQueued: 3 });
  const taken = [1, 2, 3].map((j) => g.batcher.submit(j));
  assert.is(g.batcher.submit(4), null, 'the fourth is refused while three wait');
  await until(() => g.batches.length === 1);
  // the first batch took two: room again
  const later = g.batcher.submit(5);
  assert.ok(later);
  while (g.batches.length < 2 || g.gates.length > 0) {
    await until(() => g.gates.length > 0);
    g.gates.shift()!();
  }
  assert.equal(await Promise.all([...taken, later]), [10, 20, 30, 50]);
});

test('a batch in progress for `stalled.afterMs` no longer holds up the jobs behind it, up to `stalled.concurrency` batches', async () => {
  const g = gated({ max: 4, concurrency: 1, stalled: { afterMs: 30, concurrency: 3 } });
  const first = g.batcher.submit(1)!;
  await until(() => g.batches.length === 1);
  const t0 = performance.now();
  const second = g.batcher.submit(2)!;
  await until(() => g.batches.length === 2);
  assert.ok(performance.now() - t0 >= 25, 'the second batch waited for the first to count as stalled');
  const third = g.batcher.submit(3)!;
  await until(() => g.batches.length === 3);
  const fourth = g.batcher.submit(4)!;
  // three in progress, all stalled: the fourth waits for one of them to finish
  await new Promise((r) => setTimeout(r, 80));
  assert.is(g.batches.length, 3);
  g.gates.shift()!();
  await until(() => g.batches.length === 4);
  // the first's gate was released above; the others', the fourth's included, now
  while (g.gates.length > 0) g.gates.shift()!();
  assert.equal(await Promise.all([first, second, third, fourth]), [10, 20, 30, 40]);
});

test.run();
