// 8. Function endpoints: a Web-standard `fetch` handler called over plain HTTP through its endpoint,
//    `ANY {api}/fn/{handle}/{name}/{path}?{query}` (the API process: parse, the route by handle and
//    name, the access check, the version's pool, one request over the instance's Unix socket, the
//    bootstrap's Request/Response conversion, the answer streamed back), process driver and docker
//    driver, on the platform's default pool settings (FUNCTION_MAX_INSTANCES, FUNCTION_CONCURRENCY),
//    on the same servers as the warm scenario:
//    - `public` access (no credential to check): 1 client (latency) and 16 clients (throughput);
//    - `key` access, the key in X-Function-Key: 1 client (what checking a function key adds);
//    each level in chunks alternating with its floor: the same handler module behind a bare
//    node:http server doing the minimal faithful conversion (http-floor-server.ts), hit by
//    autocannon with the same request. Around each level, GET /instances before and after.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { loadConfig } from '../../../shared/config.ts';
import { makeNodeFunction } from '../../../tests/support/archives.ts';
import { removeFunctionImages } from '../docker.ts';
import { chunks, startFloorServer, unpackHandler, type FloorServer } from '../floor-process.ts';
import type { BenchServer, BenchUser, DbKind } from '../harness.ts';
import { accountInstances, instancesOf } from '../instances.ts';
import { mergeLoads, runLoad, type LoadResult } from '../load.ts';
import { call, deleteFunction, deployAndWait } from '../seed.ts';
import { sleep } from '../stats.ts';
import { clients, latencyRow, verdict, type Context, type Floor, type ResultRow, type Scenario } from '../types.ts';

/** Each level of the figure and its floor alternate in this many chunks (fewer when small). */
const CHUNKS = 5;
/** The targets of the issue (docs/benchmarks.md, section 8). */
const TARGET_P50_OVER_FLOOR_MS = 1;
const TARGET_THROUGHPUT_SHARE = 0.5;
/** How long a change of access may take to reach the endpoint before the scenario gives up. */
const ACCESS_CHANGE_TIMEOUT_MS = 10_000;

/** The handler every endpoint figure calls: a small JSON answer echoing the path and a query parameter. */
export const HTTP_HANDLER_SOURCE = `export default {
  fetch(request) {
    const url = new URL(request.url);
    return Response.json({ path: url.pathname, q: url.searchParams.get('q') });
  },
};
`;
/** What is asked of it: below the function's prefix on the endpoint, at the root on the floor. */
const REQUEST_PATH = '/echo?q=bench';

type DriverName = 'process' | 'docker';
type Access = 'public' | 'key';

const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

interface Endpoint {
  server: BenchServer;
  user: BenchUser;
  functionId: string;
  /** `/fn/{handle}/{name}`: the endpoint's path prefix on the server */
  prefix: string;
}

async function patchAccess(e: Endpoint, access: 'private' | Access): Promise<Record<string, unknown>> {
  const res = await call(e.server, e.user, 'PATCH', `/api/functions/${e.functionId}`, { access });
  if (res.status !== 200) throw new Error(`PATCH access=${access} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as Record<string, unknown>;
}

/** One GET of the endpoint with these headers: status, body text and the headers the platform adds. */
async function get(e: Endpoint, headers: Record<string, string> = {}) {
  const res = await fetch(`${e.server.url}${e.prefix}${REQUEST_PATH}`, { headers });
  return { status: res.status, text: await res.text(), version: res.headers.get('x-function-version'), requestId: res.headers.get('x-request-id') };
}

/** Polls until the endpoint answers `status` with `headers` (an access change reaching the route cache). */
async function untilAnswers(e: Endpoint, headers: Record<string, string>, status: number, what: string): Promise<void> {
  const deadline = Date.now() + ACCESS_CHANGE_TIMEOUT_MS;
  for (;;) {
    const res = await get(e, headers);
    if (res.status === status) return;
    if (Date.now() > deadline) throw new Error(`${what}: the endpoint still answers ${res.status} (${res.text.slice(0, 200)}) after ${ACCESS_CHANGE_TIMEOUT_MS} ms, expected ${status}`);
    await sleep(20);
  }
}

/** The figure and its floor must compute the same thing: one request to each, answers compared. */
async function sameAnswer(e: Endpoint, headers: Record<string, string>, floor: FloorServer) {
  const platform = await get(e, headers);
  const res = await fetch(`${floor.url}${REQUEST_PATH}`, { headers });
  const bare = await res.text();
  if (platform.status !== 200 || res.status !== 200 || platform.text !== bare) {
    throw new Error(`the endpoint (${platform.status}: ${platform.text.slice(0, 200)}) and the bare floor (${res.status}: ${bare.slice(0, 200)}) do not answer alike`);
  }
  return { body: bare, functionVersionHeader: platform.version, requestIdHeader: platform.requestId !== null };
}

async function measure(
  ctx: Context,
  db: DbKind,
  driver: DriverName,
  e: Endpoint,
  floor: FloorServer,
  level: { connections: number; requests: number; access: Access; headers: Record<string, string> },
): Promise<ResultRow> {
  const { connections, access, headers } = level;
  const { concurrency, maxPerVersion } = loadConfig(process.env).instances;
  const answer = await sameAnswer(e, headers, floor);
  const parts = chunks(level.requests, CHUNKS, connections);
  const how = access === 'key' ? 'key access (X-Function-Key)' : 'public';
  const variant = `${driver} driver, ${how}, ${clients(connections)}`;
  ctx.log(`http/${db}: ${level.requests} endpoint requests, ${variant}, in ${parts.length} chunks alternating with the bare HTTP floor`);
  const before = await instancesOf(e.server, e.user, e.functionId);
  const loads: LoadResult[] = [];
  const floorLoads: LoadResult[] = [];
  for (const amount of parts) {
    const warmup = loads.length === 0 ? ctx.sizes.httpWarmup : 0;
    const common = { method: 'GET' as const, headers, connections, amount, warmup };
    loads.push(await runLoad({ ...common, url: e.server.url, serverPid: e.server.pid, path: `${e.prefix}${REQUEST_PATH}` }));
    floorLoads.push(await runLoad({ ...common, url: floor.url, serverPid: floor.pid, path: REQUEST_PATH }));
  }
  const after = await instancesOf(e.server, e.user, e.functionId);
  const load = mergeLoads(loads);
  const bare = mergeLoads(floorLoads);
  // a floor that failed requests would be fast for the wrong reason
  if (bare.non2xx + bare.transportErrors > 0) {
    throw new Error(`the bare HTTP floor failed requests: ${JSON.stringify(bare.statuses)}, ${bare.transportErrors} connection errors`);
  }
  const instances = accountInstances(before, after, level.requests + ctx.sizes.httpWarmup, concurrency);
  const floorRow: Floor = {
    label: `bare node:http server, same fetch handler (Request/Response conversion), ${clients(connections)}`,
    stat: bare.stat,
    throughput: { value: bare.rps, unit: 'req/s' },
  };
  const targets: Record<string, unknown>[] = [];
  if (connections === 1) {
    const limit = bare.stat.p50 + TARGET_P50_OVER_FLOOR_MS;
    const met = load.stat.p50 <= limit;
    targets.push({ target: `p50 ≤ floor p50 + ${TARGET_P50_OVER_FLOOR_MS} ms`, value: load.stat.p50, floor: bare.stat.p50, delta: load.stat.p50 - bare.stat.p50, limit, met });
    ctx.note(
      `${db}, ${variant}: p50 ${fmt(load.stat.p50)} vs floor ${fmt(bare.stat.p50)} + ${TARGET_P50_OVER_FLOOR_MS} ms = ${fmt(limit)} ` +
        `(+${fmt(load.stat.p50 - bare.stat.p50)}): ${verdict(met)}`,
    );
  } else {
    const limit = bare.rps * TARGET_THROUGHPUT_SHARE;
    const met = load.rps >= limit;
    targets.push({ target: `throughput ≥ ${TARGET_THROUGHPUT_SHARE * 100} % of the floor's`, value: load.rps, floor: bare.rps, limit, share: load.rps / bare.rps, met });
    ctx.note(
      `${db}, ${variant}: ${Math.round(load.rps)} req/s vs floor ${Math.round(bare.rps)} req/s ` +
        `(${Math.round((100 * load.rps) / bare.rps)} %, target ≥ ${TARGET_THROUGHPUT_SHARE * 100} %): ${verdict(met)}`,
    );
  }
  ctx.note(
    `${db}, ${variant}: ${instances.instancesStarted} instance(s) started under ${instances.requests} requests ` +
      `(${instances.instancesBefore} before, ${instances.instancesAfter} after; the listed instances served ${instances.servedByListedInstances}` +
      `${instances.accountingComplete ? '' : ': the accounting does not add up'})`,
  );
  return latencyRow({ scenario: 'http', db, variant }, load.stat, load.wallMs, {
    throughput: { value: load.rps, unit: 'req/s' },
    errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
    floors: [floorRow],
    details: {
      // serverCores: the API process alone (its instances are processes or containers of their own)
      cpu: load.cpu,
      floorCpu: bare.cpu,
      pool: { maxInstances: maxPerVersion, concurrency },
      access,
      request: `GET ${e.prefix}${REQUEST_PATH}`,
      answer,
      instances,
      targets,
      warmup: ctx.sizes.httpWarmup,
    },
  });
}

async function endpointFigures(ctx: Context, db: DbKind, driver: DriverName, e: Endpoint, floor: FloorServer): Promise<ResultRow[]> {
  const rows: ResultRow[] = [];
  // public: nothing to check, so no auth cost is mixed into the figure
  await patchAccess(e, 'public');
  await untilAnswers(e, {}, 200, 'access public');
  for (const level of ctx.sizes.httpRequests) rows.push(await measure(ctx, db, driver, e, floor, { ...level, access: 'public', headers: {} }));

  // key: a function key in X-Function-Key, checked on every request
  const created = await call(e.server, e.user, 'POST', `/api/functions/${e.functionId}/keys`, { name: 'bench' });
  if (created.status !== 201 || typeof created.body?.key !== 'string') {
    throw new Error(`POST /keys answered ${created.status}: ${JSON.stringify(created.body)}`);
  }
  const headers = { 'x-function-key': created.body.key as string };
  await patchAccess(e, 'key');
  await untilAnswers(e, {}, 401, 'access key, no key');
  await untilAnswers(e, headers, 200, 'access key, with the key');
  rows.push(await measure(ctx, db, driver, e, floor, { connections: 1, requests: ctx.sizes.httpKeyRequests, access: 'key', headers }));
  return rows;
}

export const http: Scenario = {
  name: 'http',
  title: 'Function endpoints: a fetch handler over plain HTTP, process and docker drivers',
  servers: (_db, docker) => (docker ? ['runner-process', 'runner-docker'] : ['runner-process']),
  async run(ctx, db) {
    const rows: ResultRow[] = [];
    const archive = await makeNodeFunction(HTTP_HANDLER_SOURCE);
    const handler = await unpackHandler(archive);
    const floor = await startFloorServer(handler.modulePath, 'http-floor-server.ts');
    const { concurrency, maxPerVersion } = loadConfig(process.env).instances;
    ctx.note(
      `pool: the platform's defaults, FUNCTION_MAX_INSTANCES=${maxPerVersion}, FUNCTION_CONCURRENCY=${concurrency} ` +
        `(as the warm scenario; the floor is one Node process taking every connection at once)`,
    );
    const made: Endpoint[] = [];
    const deploy = async (server: BenchServer): Promise<Endpoint> => {
      const user = await server.newUser();
      const me = await call(server, user, 'GET', '/api/auth/me');
      const handle = (me.body as { handle?: unknown })?.handle;
      if (me.status !== 200 || typeof handle !== 'string') throw new Error(`GET /api/auth/me answered ${me.status} without a handle: ${JSON.stringify(me.body)}`);
      const name = `bench-http-${randomUUID().slice(0, 8)}`;
      const fn = await deployAndWait(server, user, name, archive);
      const e: Endpoint = { server, user, functionId: fn.functionId, prefix: `/fn/${handle}/${name}` };
      made.push(e);
      // the URL the platform shows is the one measured
      const shown = await call(server, user, 'GET', `/api/functions/${fn.functionId}`);
      const url = (shown.body as { url?: unknown })?.url;
      if (typeof url !== 'string' || new URL(url).pathname !== e.prefix) {
        throw new Error(`the function's url is ${JSON.stringify(url)}, expected one ending in ${e.prefix}`);
      }
      return e;
    };
    try {
      const processServer = await ctx.server(db, 'runner-process');
      rows.push(...(await endpointFigures(ctx, db, 'process', await deploy(processServer), floor)));
      if (ctx.dockerUnavailable) {
        ctx.note(`docker driver skipped: ${ctx.dockerUnavailable}`);
        return rows;
      }
      ctx.log(`http/${db}: building the function with the docker driver`);
      const dockerServer = await ctx.server(db, 'runner-docker');
      rows.push(...(await endpointFigures(ctx, db, 'docker', await deploy(dockerServer), floor)));
      return rows;
    } finally {
      await floor.close();
      fs.rmSync(handler.dir, { recursive: true, force: true });
      for (const m of made) {
        await deleteFunction(m.server, m.user, m.functionId).catch((err) => ctx.log(`could not delete ${m.functionId}: ${String(err)}`));
      }
      await removeFunctionImages(made.map((m) => m.functionId)).catch(() => {});
    }
  },
};
