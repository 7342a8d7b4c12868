// 4. Runner pickup: from /complete to the build claimed. Measured between two timestamps the
//    platform itself writes: the deployment's queued_at (set in /complete's transaction, just
//    before it commits and NOTIFYs) and the build_started event the runner records right after its
//    claim statement. The bench's runner shares the API's process: woken in-process at commit
//    (and by NOTIFY on PostgreSQL), or by polling alone (RUNNER_NOTIFY=off), as a runner in another
//    process on SQLite is. Each polled /complete comes at a random moment of the poll interval.
//    Floors: a bare LISTEN/NOTIFY round trip (PostgreSQL), a bare single-row UPDATE transaction.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import knexFactory from 'knex';
import { toIso } from '../../../shared/db/time.ts';
import type { BenchServer } from '../harness.ts';
import { complete, requestAndUpload, smallFunction, type Deployed } from '../seed.ts';
import { sleep, summarize, timeSequential } from '../stats.ts';
import { latencyRow, type Floor, type ResultRow, type Scenario } from '../types.ts';

const at = (value: unknown) => Date.parse(toIso(value) ?? 'invalid');

async function measure(server: BenchServer, samples: number, jitterMs: number) {
  const user = await server.newUser();
  const archive = await smallFunction();
  const name = `bench-pickup-${randomUUID().slice(0, 8)}`;
  // Not measured: the deploys requested and uploaded beforehand.
  const ready: Deployed[] = [];
  for (let i = 0; i < samples; i++) ready.push(await requestAndUpload(server, user, name, archive));
  const knex = server.platform.db.knex;
  const latencies: number[] = [];
  const started = performance.now();
  for (const d of ready) {
    await sleep(Math.random() * jitterMs);
    await complete(server, user, d);
    const deadline = Date.now() + 30_000;
    let startedEvent: { created_at: unknown } | undefined;
    while (!(startedEvent = await knex('function_logs').where({ deployment_id: d.deploymentId, event: 'build_started' }).first('created_at'))) {
      if (Date.now() > deadline) throw new Error(`version ${d.version} was not claimed within 30 s`);
      await sleep(5);
    }
    const dep = await knex('function_deployments').where({ id: d.deploymentId }).first('queued_at');
    latencies.push(at(startedEvent.created_at) - at(dep.queued_at));
  }
  return { stat: summarize(latencies), wallMs: performance.now() - started };
}

/** The claim's own cost, with nothing to wait for: a bare single-row UPDATE transaction. */
async function claimFloor(server: BenchServer, n: number): Promise<Floor> {
  const knex = server.platform.db.knex;
  const row = await knex('function_deployments').first('id');
  const { samples } = await timeSequential(n, () =>
    knex.transaction((trx) => trx('function_deployments').where({ id: row.id }).update({ updated_at: new Date().toISOString() })),
  );
  return { label: 'bare single-row UPDATE transaction on function_deployments (the claim without the wait)', stat: summarize(samples) };
}

async function notifyFloor(server: BenchServer, n: number): Promise<Floor> {
  const url = server.platform.config.database.client === 'pg' ? server.platform.config.database.url : '';
  const listener = new pg.Client({ connectionString: url });
  const sender = knexFactory({ client: 'pg', connection: url, pool: { min: 1, max: 1 } });
  await listener.connect();
  await listener.query('LISTEN containerpub_bench_floor');
  await sender.raw('select 1');
  let arrived: (() => void) | undefined;
  listener.on('notification', () => arrived?.());
  try {
    const { samples } = await timeSequential(n, async () => {
      const received = new Promise<void>((resolve) => (arrived = resolve));
      await sender.raw('NOTIFY containerpub_bench_floor');
      await received;
    });
    return { label: 'bare NOTIFY → LISTEN round trip', stat: summarize(samples) };
  } finally {
    await listener.end();
    await sender.destroy();
  }
}

export const pickup: Scenario = {
  name: 'pickup',
  title: 'Runner pickup: from /complete to claimed (NOTIFY vs polling)',
  servers: () => ['runner-process', 'runner-process-poll'],
  async run(ctx, db) {
    const pollMs = ctx.sizes.runnerPollMs;
    const rows: ResultRow[] = [];
    const { pickupNotifySamples: notifyN, pickupPollSamples: pollN } = ctx.sizes;
    const polling = async (server: BenchServer, variant: string) => {
      ctx.log(`pickup/${db}: ${pollN} samples, ${variant}`);
      const m = await measure(server, pollN, pollMs);
      rows.push(
        latencyRow({ scenario: 'pickup', db, variant }, m.stat, m.wallMs, {
          floors: [{ label: `expected mean ${pollMs / 2} ms: half of RUNNER_POLL_MS, plus the claim`, ms: pollMs / 2 }],
          details: { pollMs: pollMs },
        }),
      );
    };
    const wakeServer = await ctx.server(db, 'runner-process');
    // The runner shares the API's process here: on SQLite it is woken in-process when the
    // /complete transaction commits; on PostgreSQL by that and by NOTIFY (which also reaches
    // runners elsewhere). Neither depends on the poll timer's phase: a short pause only keeps the
    // samples apart.
    const wakeVariant =
      db === 'postgres'
        ? `NOTIFY + in-process wake-up (RUNNER_NOTIFY=on, RUNNER_POLL_MS=${pollMs})`
        : `in-process wake-up, runner in the API process (RUNNER_NOTIFY=on, RUNNER_POLL_MS=${pollMs})`;
    ctx.log(`pickup/${db}: ${notifyN} samples, ${wakeVariant}`);
    const m = await measure(wakeServer, notifyN, 20);
    rows.push(
      latencyRow({ scenario: 'pickup', db, variant: wakeVariant }, m.stat, m.wallMs, {
        floors:
          db === 'postgres'
            ? [await notifyFloor(wakeServer, Math.max(notifyN, 20)), await claimFloor(wakeServer, Math.max(notifyN, 20))]
            : [await claimFloor(wakeServer, Math.max(notifyN, 20))],
      }),
    );
    await polling(
      await ctx.server(db, 'runner-process-poll'),
      `polling only (RUNNER_NOTIFY=off, RUNNER_POLL_MS=${pollMs}${db === 'sqlite' ? '; how a runner in another process finds work on SQLite' : ''})`,
    );
    return rows;
  },
};
