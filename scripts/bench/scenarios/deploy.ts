// 2. Deploy requests without a build (no runner on this server): POST /deploy (a version allocated
//    under the function's lock, a presigned URL signed) under 1, 16 and 64 concurrent clients, over
//    8 functions in turn, in chunks alternating with its floor: Hono answering /healthz under the
//    same load (one floor measured once, for a figure of a fraction of a second, moved the 16-client
//    ratio by ±25 % between runs), each chunk with at least 20 requests a connection (at 64
//    clients, one run: MIN_REQUESTS_PER_CONNECTION). Then POST …/complete (S3 asked for the object's size, the object
//    streamed back to hash it, the build queued) of some of those versions, at the same level; the
//    uploads between the two are made beforehand and not measured.
//    And POST …/complete of a 1 MiB archive, one client, beside its floor: one GetObject of the
//    same object from the same S3 server, read to the end (what complete cannot avoid: it must
//    read the whole object to hash it), in alternating chunks.
import { randomBytes } from 'node:crypto';
import { archiveKey } from '../../../shared/domain/model.ts';
import type { BenchServer, BenchUser } from '../harness.ts';
import { mergeLoads, runLoad, warmUntilSettled, type LoadResult } from '../load.ts';
import { chunks } from '../floor-process.ts';
import { forEachLimited, summarize, timeSequential } from '../stats.ts';
import { sha256, smallFunction } from '../seed.ts';
import { clients, latencyRow, verdict, type ResultRow, type Scenario } from '../types.ts';

/** Deploys go to this many functions in turn: concurrent deploys of one function queue on its lock. */
const FUNCTIONS = 8;

/** Each level's /deploy and its /healthz floor alternate in this many chunks (fewer when small). */
const CHUNKS = 5;
/**
 * Each connection makes at least this many requests in a chunk (fewer chunks otherwise). A chunk
 * opens its connections at once, and their first requests arrive together; as connections finish
 * their share, fewer remain. With ~8 requests a connection (64 clients, chunks of 500) that start
 * and that end made the percentiles: p99 / p50 of 17–26× in chunks of 500, 1.7–1.8× in runs of
 * 2,500 on the same server (docs/benchmarks.md, issue 15's sixteenth pass). At 16 clients the
 * chunks keep their number (500 requests: 31 a connection); at 64 the level is one run.
 */
const MIN_REQUESTS_PER_CONNECTION = 20;

/** Issue 15's target: /deploy at this many clients serves at least this share of /healthz's rate. */
const TARGET_CLIENTS = 16;
const TARGET_THROUGHPUT_SHARE = 0.25;

interface Created {
  id: string;
  version: number;
}

/** `amount` × POST /deploy; returns the load and the versions it allocated. */
async function deploys(server: BenchServer, user: BenchUser, archive: Buffer, opts: { connections: number; amount: number; prefix: string }) {
  const declared = { sizeBytes: archive.length, sha256: sha256(archive) };
  const created: Created[] = [];
  let counter = 0;
  const load = await runLoad({
    url: server.url,
    serverPid: server.pid,
    path: '/api/functions/deploy',
    method: 'POST',
    headers: user.headers,
    connections: opts.connections,
    amount: opts.amount,
    requests: [
      {
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ name: `${opts.prefix}-${counter++ % FUNCTIONS}`, ...declared }) }),
        onResponse: (status, body) => {
          if (status !== 201) return;
          const parsed = JSON.parse(body) as Created;
          created.push({ id: parsed.id, version: parsed.version });
        },
      },
    ],
  });
  return { load, created };
}

/** Not measured: the uploads a client makes between /deploy and /complete. */
async function upload(server: BenchServer, archive: Buffer, created: Created[]): Promise<void> {
  await forEachLimited(created, 16, (d) => server.platform.storage.putBuffer(archiveKey(d.id, d.version), archive));
}

/** POST …/complete once for each of `created`; `overdrawn` counts requests beyond them (none expected). */
async function completes(server: BenchServer, user: BenchUser, created: Created[], connections: number) {
  let next = 0;
  let overdrawn = 0;
  const load = await runLoad({
    url: server.url,
    serverPid: server.pid,
    method: 'POST',
    headers: user.headers,
    connections,
    amount: created.length,
    requests: [
      {
        setupRequest: (req) => {
          if (next >= created.length) overdrawn++;
          const d = created[Math.min(next++, created.length - 1)]!;
          return { ...req, path: `/api/functions/${d.id}/deployments/${d.version}/complete` };
        },
      },
    ],
  });
  return { load, overdrawn };
}

export const deploy: Scenario = {
  name: 'deploy',
  title: 'Deploy requests (/deploy + /complete, no build) under concurrent clients',
  servers: () => ['api'],
  async run(ctx, db) {
    const server = await ctx.server(db, 'api');
    const user = await server.newUser();
    const archive = await smallFunction();
    const rows: ResultRow[] = [];
    const knex = server.platform.db.knex;

    // Warm-up, not recorded: both routes and /healthz once through, on functions of their own.
    const w = ctx.sizes.warmup;
    const warm = await deploys(server, user, archive, { connections: Math.min(16, w), amount: w, prefix: 'bench-warmup' });
    await upload(server, archive, warm.created);
    const warmDone = await completes(server, user, warm.created, Math.min(16, w));
    const warmHealth = await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections: Math.min(16, w), amount: w });
    if (warm.load.non2xx + warmDone.load.non2xx + warmHealth.non2xx > 0) throw new Error('the deploy warm-up failed');
    // Then until the server has settled: both routes at the target level, until /deploy's rate stops climbing.
    const round = ctx.sizes.deploySettleRound;
    const settleRates = await warmUntilSettled(
      async () => {
        const d = await deploys(server, user, archive, { connections: TARGET_CLIENTS, amount: round, prefix: 'bench-warmup' });
        const h = await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections: TARGET_CLIENTS, amount: round });
        return [d.load, h];
      },
      { maxRounds: ctx.sizes.deploySettleRounds, minRounds: ctx.sizes.deploySettleMinRounds },
    );
    ctx.log(`deploy/${db}: warm-up, ${settleRates.length} × ${round} POST /deploy at ${clients(TARGET_CLIENTS)} (and as many /healthz): ${settleRates.join(', ')} req/s`);

    for (const connections of ctx.sizes.deployConnections) {
      const parts = chunks(ctx.sizes.deploysPerLevel, CHUNKS, connections * MIN_REQUESTS_PER_CONNECTION);
      ctx.log(`deploy/${db}: ${ctx.sizes.deploysPerLevel} × POST /deploy, ${clients(connections)}, in ${parts.length} chunks alternating with as many GET /healthz`);
      const deployLoads: LoadResult[] = [];
      const healthLoads: LoadResult[] = [];
      const created: Created[] = [];
      for (const amount of parts) {
        const d = await deploys(server, user, archive, { connections, amount, prefix: 'bench-deploy' });
        deployLoads.push(d.load);
        created.push(...d.created);
        healthLoads.push(await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections, amount }));
      }
      const chunkRates = { deploy: deployLoads.map((l) => Math.round(l.rps)), healthz: healthLoads.map((l) => Math.round(l.rps)) };
      ctx.log(`deploy/${db}: ${clients(connections)}, chunk by chunk: /deploy ${chunkRates.deploy.join(', ')} req/s; /healthz ${chunkRates.healthz.join(', ')} req/s`);
      const deployed = mergeLoads(deployLoads);
      const health = mergeLoads(healthLoads);

      const toComplete = created.slice(0, ctx.sizes.completesPerLevel);
      await upload(server, archive, toComplete);
      ctx.log(`deploy/${db}: ${toComplete.length} × POST /complete, ${clients(connections)}`);
      const c = await completes(server, user, toComplete, connections);
      const queued = await knex('function_deployments as d')
        .join('functions as f', 'f.id', 'd.function_id')
        .where({ 'f.user_id': user.userId, 'd.status': 'building' })
        .count({ c: '*' });

      const share = deployed.rps / health.rps;
      const targets: Record<string, unknown>[] = [];
      if (connections === TARGET_CLIENTS) {
        const met = share >= TARGET_THROUGHPUT_SHARE;
        targets.push({ target: `throughput ≥ ${TARGET_THROUGHPUT_SHARE * 100} % of /healthz's`, value: deployed.rps, limit: health.rps * TARGET_THROUGHPUT_SHARE, share, met });
        ctx.note(
          `${db}, POST /deploy, ${clients(connections)}: ${Math.round(deployed.rps)} req/s vs /healthz ${Math.round(health.rps)} req/s ` +
            `(${Math.round(100 * share * 10) / 10} %, target ≥ ${TARGET_THROUGHPUT_SHARE * 100} %): ${verdict(met)}`,
        );
      }
      const floor = {
        label: `GET /healthz, ${clients(connections)}, in ${parts.length} chunks alternating with /deploy's`,
        stat: health.stat,
        throughput: { value: health.rps, unit: 'req/s' },
      };
      const row = (variant: string, load: LoadResult, details: Record<string, unknown>) =>
        latencyRow({ scenario: 'deploy', db, variant }, load.stat, load.wallMs, {
          throughput: { value: load.rps, unit: 'req/s' },
          errors: { non2xx: load.non2xx + health.non2xx, transport: load.transportErrors + health.transportErrors, statuses: load.statuses },
          floors: [floor],
          details: { connections, functions: FUNCTIONS, cpu: load.cpu, healthzCpu: health.cpu, ...details },
        });
      rows.push(row(`POST /deploy, ${clients(connections)}`, deployed, { versionsAllocated: created.length, chunks: parts.length, chunkRates, shareOfHealthz: share, targets, warmupRates: settleRates }));
      rows.push(row(`POST /complete, ${clients(connections)}`, c.load, { overdrawn: c.overdrawn, queuedForBuildSoFar: Number(queued[0]?.c ?? 0) }));
    }
    rows.push(await completeLarge(ctx, db, server, user));
    return rows;
  },
};

/** POST …/complete of a 1 MiB archive, one client, against one GetObject of it read fully. */
async function completeLarge(ctx: Parameters<Scenario['run']>[0], db: Parameters<Scenario['run']>[1], server: BenchServer, user: BenchUser): Promise<ResultRow> {
  const archive = randomBytes(1024 * 1024);
  const total = Math.max(4, Math.floor(ctx.sizes.completesPerLevel / 5));
  const chunks = total >= 40 ? 4 : 1;
  const perChunk = Math.floor(total / chunks);
  ctx.log(`deploy/${db}: ${perChunk * chunks} × POST /complete of 1 MiB, 1 client, in ${chunks} chunks alternating with GetObject`);
  const storage = server.platform.storage;
  const readWhole = async (key: string) => {
    let bytes = 0;
    for await (const chunk of await storage.getStream(key)) bytes += (chunk as Buffer).length;
    if (bytes !== archive.length) throw new Error(`GetObject read ${bytes} bytes`);
  };
  const loads: LoadResult[] = [];
  const gets: number[] = [];
  let getWallMs = 0;
  for (let i = 0; i < chunks; i++) {
    const d = await deploys(server, user, archive, { connections: 1, amount: perChunk, prefix: 'bench-complete-1mib' });
    await upload(server, archive, d.created);
    if (i === 0) {
      // warm-up, not recorded: the route and the S3 client's connections
      const w = d.created.splice(0, Math.min(4, d.created.length - 1));
      await completes(server, user, w, 1);
      for (const x of w) await readWhole(archiveKey(x.id, x.version));
    }
    loads.push((await completes(server, user, d.created, 1)).load);
    const keys = d.created.map((x) => archiveKey(x.id, x.version));
    const t = await timeSequential(keys.length, (k) => readWhole(keys[k]!));
    gets.push(...t.samples);
    getWallMs += t.wallMs;
  }
  const load = mergeLoads(loads);
  const floor = summarize(gets);
  const ratio = { p50: Math.round((load.stat.p50 / floor.p50) * 100) / 100, p99: Math.round((load.stat.p99 / floor.p99) * 100) / 100 };
  return latencyRow({ scenario: 'deploy', db, variant: 'POST /complete of a 1 MiB archive, 1 client' }, load.stat, load.wallMs, {
    throughput: { value: load.rps, unit: 'req/s' },
    errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
    floors: [
      {
        label: `GetObject of the same 1 MiB object, read fully, same S3 server; complete is ${ratio.p50}× at p50, ${ratio.p99}× at p99`,
        stat: floor,
        throughput: { value: gets.length / (getWallMs / 1000), unit: 'GET/s' },
      },
    ],
    details: { cpu: load.cpu, ratioToFloor: ratio, archiveBytes: archive.length, chunks },
  });
}
