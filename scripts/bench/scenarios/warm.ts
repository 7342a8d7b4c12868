// 5. Invocation on warm instances, through POST /api/functions/{id}/invoke (bearer token: auth, the
//    live route, the version's pool, one request over the instance's Unix socket, the invocation
//    recorded off the request path), process driver and docker driver, on the platform's default
//    pool settings (FUNCTION_MAX_INSTANCES, FUNCTION_CONCURRENCY):
//    - warm: 1 client (latency) and 16 clients (throughput), each level in chunks alternating
//      with its floor: the same handler behind a bare node:http server (floor-server.ts), hit by
//      autocannon with the same request. Around each level, GET /instances before and after: which
//      instances started under the load, and how many requests the listed instances served;
//    - cold start: the first invocation of a version scaled to zero, on a server whose instances
//      stop 100 ms after their last invocation (COLD_IDLE_MS). Each sample waits until the version
//      has no instance left (and its teardown is over); once the instance it started is gone too,
//      one floor sample follows: the same bootstrap started bare (a child node, or a container
//      with the same options) until GET /ready answers, plus one POST /invoke (instance-floor.ts,
//      docker.ts).
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../../shared/config.ts';
import { bareContainerColdStart, removeFunctionImages } from '../docker.ts';
import { chunks, startFloorServer, unpackHandler, type FloorServer } from '../floor-process.ts';
import type { BenchServer, BenchUser, DbKind } from '../harness.ts';
import { bareProcessColdStart } from '../instance-floor.ts';
import { accountInstances, instancesOf } from '../instances.ts';
import { mergeLoads, runLoad, type LoadResult } from '../load.ts';
import { call, deleteFunction, deployAndWait, INVOKE_EVENT, smallFunction } from '../seed.ts';
import { COLD_IDLE_MS } from '../servers.ts';
import { sleep, summarize } from '../stats.ts';
import { clients, latencyRow, verdict, type Context, type Floor, type ResultRow, type Scenario } from '../types.ts';

/** Each level of the figure and its floor alternate in this many chunks (fewer when small). */
const CHUNKS = 5;
/** The targets the platform is held to (docs/benchmarks.md). */
const TARGET_P50_OVER_FLOOR_MS = 1;
const TARGET_THROUGHPUT_SHARE = 0.5;
const TARGET_COLD_RATIO = 1.2;
/** How long a version may take to scale to zero (idle time plus teardown) before a sample fails. */
const SCALE_TO_ZERO_TIMEOUT_MS = 30_000;

type DriverName = 'process' | 'docker';

const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

// ------------------------------------------------------------------ warm figures

/** The figure and its floor must compute the same thing: one request to each, results compared. */
async function sameAnswer(server: BenchServer, user: BenchUser, functionId: string, floor: FloorServer): Promise<void> {
  const body = JSON.stringify(INVOKE_EVENT);
  const platform = await call(server, user, 'POST', `/api/functions/${functionId}/invoke`, INVOKE_EVENT);
  const res = await fetch(`${floor.url}/`, { method: 'POST', headers: user.headers, body });
  const bare = (await res.json()) as { result?: unknown };
  const a = JSON.stringify((platform.body as { result?: unknown }).result);
  const b = JSON.stringify(bare.result);
  if (platform.status !== 200 || res.status !== 200 || a !== b) {
    throw new Error(`the platform (${platform.status}: ${a}) and the bare floor (${res.status}: ${b}) do not answer alike`);
  }
}

async function warmFigures(
  ctx: Context,
  db: DbKind,
  driver: DriverName,
  server: BenchServer,
  user: BenchUser,
  functionId: string,
  floor: FloorServer,
): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  const body = JSON.stringify(INVOKE_EVENT);
  const { concurrency, maxPerVersion } = loadConfig(process.env).instances;
  await sameAnswer(server, user, functionId, floor);
  for (const level of ctx.sizes.warmRequests) {
    const { connections } = level;
    const parts = chunks(level.requests, CHUNKS, connections);
    ctx.log(`warm/${db}: ${level.requests} invocations, ${driver} driver, ${clients(connections)}, in ${parts.length} chunks alternating with the bare HTTP floor`);
    const before = await instancesOf(server, user, functionId);
    const loads: LoadResult[] = [];
    const floorLoads: LoadResult[] = [];
    for (const amount of parts) {
      const warmup = loads.length === 0 ? ctx.sizes.warmup : 0;
      const common = { method: 'POST' as const, headers: user.headers, body, connections, amount, warmup };
      loads.push(await runLoad({ ...common, url: server.url, serverPid: server.pid, path: `/api/functions/${functionId}/invoke` }));
      floorLoads.push(await runLoad({ ...common, url: floor.url, serverPid: floor.pid, path: '/' }));
    }
    const after = await instancesOf(server, user, functionId);
    const load = mergeLoads(loads);
    const bare = mergeLoads(floorLoads);
    // a floor that failed requests would be fast for the wrong reason
    if (bare.non2xx + bare.transportErrors > 0) {
      throw new Error(`the bare HTTP floor failed requests: ${JSON.stringify(bare.statuses)}, ${bare.transportErrors} connection errors`);
    }
    const instances = accountInstances(before, after, level.requests + ctx.sizes.warmup, concurrency);
    const floorRow: Floor = {
      label: `bare node:http server, same handler, ${clients(connections)}`,
      stat: bare.stat,
      throughput: { value: bare.rps, unit: 'req/s' },
    };
    const targets: Record<string, unknown>[] = [];
    const variant = `${driver} driver, warm, ${clients(connections)}`;
    if (connections === 1) {
      const limit = bare.stat.p50 + TARGET_P50_OVER_FLOOR_MS;
      const met = load.stat.p50 <= limit;
      targets.push({ target: `p50 ≤ floor p50 + ${TARGET_P50_OVER_FLOOR_MS} ms`, value: load.stat.p50, limit, met });
      ctx.note(`${db}, ${variant}: p50 ${fmt(load.stat.p50)} vs floor ${fmt(bare.stat.p50)} + ${TARGET_P50_OVER_FLOOR_MS} ms = ${fmt(limit)}: ${verdict(met)}`);
    } else {
      const limit = bare.rps * TARGET_THROUGHPUT_SHARE;
      const met = load.rps >= limit;
      targets.push({ target: `throughput ≥ ${TARGET_THROUGHPUT_SHARE * 100} % of the floor's`, value: load.rps, limit, share: load.rps / bare.rps, met });
      ctx.note(
        `${db}, ${variant}: ${Math.round(load.rps)} req/s vs floor ${Math.round(bare.rps)} req/s ` +
          `(${Math.round((100 * load.rps) / bare.rps)} %, target ≥ ${TARGET_THROUGHPUT_SHARE * 100} %): ${verdict(met)}`,
      );
    }
    // every request but the first `concurrency` of each instance started under the load is warm
    // (by how the pool hands out cold starts), provided no instance went unseen and none churned
    const warmMet = instances.accountingComplete && instances.instancesStarted <= maxPerVersion;
    targets.push({ target: 'all requests but the first of each instance started are warm; no instance unseen or replaced', ...instances, met: warmMet });
    ctx.note(
      `${db}, ${variant}: ${instances.instancesStarted} instance(s) started under ${instances.requests} requests ` +
        `(${instances.instancesBefore} before, ${instances.instancesAfter} after; the listed instances served ${instances.servedByListedInstances}): ` +
        `at most ${instances.coldAtMost} cold, at least ${instances.warmAtLeast} warm: ${verdict(warmMet)}`,
    );
    rows.push(
      latencyRow({ scenario: 'warm', db, variant }, load.stat, load.wallMs, {
        throughput: { value: load.rps, unit: 'req/s' },
        errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
        floors: [floorRow],
        details: {
          // serverCores: the API process alone (its instances are processes or containers of their own)
          cpu: load.cpu,
          floorCpu: bare.cpu,
          pool: { maxInstances: maxPerVersion, concurrency },
          instances,
          targets,
          warmup: ctx.sizes.warmup,
        },
      }),
    );
  }
  return rows;
}

// ------------------------------------------------------------------ cold starts

/**
 * Waits (polling, bounded) until the function has no instance in the API's list and its instance
 * directory is empty: the last one is stopped and its teardown (process killed, or container
 * removed, then its directory) is over, so a sample measures a start alone.
 */
async function scaledToZero(server: BenchServer, user: BenchUser, functionId: string): Promise<void> {
  const instanceDir = path.join(server.dataDir, 'instances');
  const deadline = Date.now() + SCALE_TO_ZERO_TIMEOUT_MS;
  for (;;) {
    const listed = await instancesOf(server, user, functionId);
    const dirs = fs.existsSync(instanceDir) ? fs.readdirSync(instanceDir) : [];
    if (listed.length === 0 && dirs.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`still ${listed.length} instance(s) and ${dirs.length} instance directories after ${SCALE_TO_ZERO_TIMEOUT_MS} ms (FUNCTION_IDLE_MS=${COLD_IDLE_MS})`);
    }
    await sleep(10);
  }
}

async function coldFigure(
  ctx: Context,
  db: DbKind,
  driver: DriverName,
  server: BenchServer,
  user: BenchUser,
  functionId: string,
  samples: number,
  floor: { label: string; start(): Promise<number> },
): Promise<ResultRow> {
  const body = JSON.stringify(INVOKE_EVENT);
  const invoke = { url: server.url, serverPid: server.pid, path: `/api/functions/${functionId}/invoke`, method: 'POST' as const, headers: user.headers, body };
  // Not measured: one invocation first, so the version's pre-warm at activation (asynchronous) has
  // come and gone before the first sample, and cannot race with it.
  await runLoad({ ...invoke, connections: 1, amount: 1 });
  ctx.log(`warm/${db}: ${samples} cold starts, ${driver} driver, each followed by one bare start (the floor)`);
  const loads: LoadResult[] = [];
  const bare: number[] = [];
  for (let i = 0; i < samples; i++) {
    await scaledToZero(server, user, functionId);
    loads.push(await runLoad({ ...invoke, connections: 1, amount: 1 }));
    // the instance just started stops COLD_IDLE_MS later: its teardown (a container removal on
    // vfs takes a while) must not overlap the floor's start, as the floor's (removed before it
    // returns) never overlaps the platform's
    await scaledToZero(server, user, functionId);
    bare.push(await floor.start());
  }
  const load = mergeLoads(loads);
  const floorStat = summarize(bare);
  const limit = floorStat.p50 * TARGET_COLD_RATIO;
  const met = load.stat.p50 <= limit;
  const variant = `${driver} driver, cold start (scaled to zero), 1 client`;
  ctx.note(`${db}, ${variant}: p50 ${fmt(load.stat.p50)} vs floor ${fmt(floorStat.p50)} (${(load.stat.p50 / floorStat.p50).toFixed(2)}×, target ≤ ${TARGET_COLD_RATIO}×): ${verdict(met)}`);
  return latencyRow({ scenario: 'warm', db, variant }, load.stat, load.wallMs, {
    throughput: null,
    errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
    floors: [{ label: floor.label, stat: floorStat }],
    details: {
      cpu: load.cpu,
      idleMs: COLD_IDLE_MS,
      targets: [{ target: `p50 ≤ ${TARGET_COLD_RATIO} × floor p50`, value: load.stat.p50, limit, ratio: load.stat.p50 / floorStat.p50, met }],
    },
  });
}

// ------------------------------------------------------------------ the scenario

export const warm: Scenario = {
  name: 'warm',
  title: 'Invocation on warm instances (and cold starts), process and docker drivers',
  servers: (_db, docker) =>
    docker ? ['runner-process', 'runner-process-cold', 'runner-docker', 'runner-docker-cold'] : ['runner-process', 'runner-process-cold'],
  async run(ctx, db) {
    const rows: ResultRow[] = [];
    const archive = await smallFunction();
    const runtime = loadConfig(process.env).runtime;
    const body = JSON.stringify(INVOKE_EVENT);
    const name = () => `bench-warm-${randomUUID().slice(0, 8)}`;
    const handler = await unpackHandler(archive);
    const floor = await startFloorServer(handler.modulePath);
    /** what to delete at the end: functions through the API (instances, then artifacts) */
    const made: { server: BenchServer; user: BenchUser; functionId: string }[] = [];
    const deploy = async (server: BenchServer) => {
      const user = await server.newUser();
      const fn = await deployAndWait(server, user, name(), archive);
      made.push({ server, user, functionId: fn.functionId });
      return { user, fn };
    };
    try {
      // process driver
      const warmServer = await ctx.server(db, 'runner-process');
      const w = await deploy(warmServer);
      rows.push(...(await warmFigures(ctx, db, 'process', warmServer, w.user, w.fn.functionId, floor)));

      const coldServer = await ctx.server(db, 'runner-process-cold');
      const c = await deploy(coldServer);
      const artifactDir = path.join(coldServer.dataDir, 'artifacts', c.fn.functionId, `v${c.fn.version}`);
      rows.push(
        await coldFigure(ctx, db, 'process', coldServer, c.user, c.fn.functionId, ctx.sizes.coldStartsProcess, {
          label: 'the same bootstrap spawned bare until GET /ready, + one POST /invoke',
          start: () => bareProcessColdStart({ ...c.fn, artifactDir, memoryMb: runtime.memoryMb, body }),
        }),
      );

      // docker driver
      if (ctx.dockerUnavailable) {
        ctx.note(`docker driver skipped: ${ctx.dockerUnavailable}`);
        return rows;
      }
      ctx.log(`warm/${db}: building the function with the docker driver (twice: warm and cold-start servers)`);
      const dockerServer = await ctx.server(db, 'runner-docker');
      const dockerColdServer = await ctx.server(db, 'runner-docker-cold');
      const [dw, dc] = await Promise.all([deploy(dockerServer), deploy(dockerColdServer)]);
      rows.push(...(await warmFigures(ctx, db, 'docker', dockerServer, dw.user, dw.fn.functionId, floor)));
      const image = dc.fn.imageTag;
      if (!image) throw new Error('the docker driver built no image tag');
      rows.push(
        await coldFigure(ctx, db, 'docker', dockerColdServer, dc.user, dc.fn.functionId, ctx.sizes.coldStartsDocker, {
          label: 'the same container (instanceContainerOptions) created + started bare until GET /ready, + one POST /invoke',
          start: () => bareContainerColdStart(image, { limits: runtime, body }),
        }),
      );
      return rows;
    } finally {
      await floor.close();
      fs.rmSync(handler.dir, { recursive: true, force: true });
      for (const m of made) {
        await deleteFunction(m.server, m.user, m.functionId).catch((err) => ctx.log(`could not delete ${m.functionId}: ${String(err)}`));
      }
      // what DELETE could not remove (an image still held by a container, say)
      await removeFunctionImages(made.map((m) => m.functionId)).catch(() => {});
    }
  },
};
