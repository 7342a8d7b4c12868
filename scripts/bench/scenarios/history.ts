// 7. History listing of a function with 10,000 versions: GET /deployments?limit=50 (the newest
//    page) and a deep page (?before=100), one client. The rows are written straight into the
//    database (built versions with realistic columns, build logs included).
//    Floor: the same SELECT (listDeployments' own column list, order and limit) run directly with knex,
//    in chunks alternating with the pages (a floor measured once, after the pages, saw other moments
//    of a shared machine: the p99s compared are each the few slowest of their samples).
//    Beside it, GET /healthz at one client on the same server: the HTTP path's own latency and tail
//    (what any page pays on this machine before it reads a row), not part of the target's ratio.
import { LIST_COLUMNS } from '../../../shared/domain/deployments.ts';
import { chunks } from '../floor-process.ts';
import { mergeLoads, runLoad, type LoadResult } from '../load.ts';
import { builtFunctionRows, insertInBatches } from '../seed.ts';
import { summarize, timeSequential } from '../stats.ts';
import { latencyRow, type ResultRow, type Scenario } from '../types.ts';

const LIMIT = 50;

/** The pages and their floor (the bare SELECT) alternate in this many chunks (fewer when small). */
const CHUNKS = 5;

export const history: Scenario = {
  name: 'history',
  title: 'History listing of a function with 10,000 versions',
  servers: () => ['api'],
  async run(ctx, db) {
    const server = await ctx.server(db, 'api');
    const user = await server.newUser();
    const knex = server.platform.db.knex;
    const versions = ctx.sizes.historyVersions;
    ctx.log(`history/${db}: seeding ${versions} versions`);
    const made = builtFunctionRows(user.userId, 'bench-history', versions);
    await knex('functions').insert(made.fn);
    await insertInBatches(knex, 'function_deployments', made.deployments, 500);
    // autovacuum would analyze a table after an insert this size within a minute or so; the bench
    // measures that steady state rather than racing it
    if (db === 'postgres') await knex.raw('ANALYZE function_deployments');
    // On SQLite the server's checkpointer copies those rows' WAL into the database file over the next
    // moments, on a thread of the server's: the first page measured paid for it (p50 0.2 ms slower
    // than the same page measured second). The same steady state: the WAL checkpointed first.
    if (db === 'sqlite') await knex.raw('PRAGMA wal_checkpoint(TRUNCATE)');

    const n = ctx.sizes.historyRequests;
    const pages = [
      { variant: `newest page (limit=${LIMIT})`, query: `?limit=${LIMIT}`, before: undefined as number | undefined },
      { variant: `deep page (limit=${LIMIT}, before=${ctx.sizes.historyDeepBefore})`, query: `?limit=${LIMIT}&before=${ctx.sizes.historyDeepBefore}`, before: ctx.sizes.historyDeepBefore },
    ];
    const pathOf = (page: (typeof pages)[number]) => `/api/functions/${made.functionId}/deployments${page.query}`;
    const bodies: unknown[] = [];
    for (const page of pages) {
      const path = pathOf(page);
      const check = await fetch(server.url + path, { headers: user.headers });
      const body = (await check.json()) as { deployments: { version: number }[] };
      const expectedFirst = page.before === undefined ? versions : page.before - 1;
      if (body.deployments?.length !== LIMIT || body.deployments[0]?.version !== expectedFirst) {
        throw new Error(`${path} answered ${check.status} with ${body.deployments?.length} rows starting at ${body.deployments?.[0]?.version}`);
      }
      bodies.push(body);
    }
    // Both pages warm the server before either is measured. Each warmed by 1,000 requests of its own
    // only, the page measured first read 2.8–4.8× its SELECT at p99 in 11 runs on SQLite, the second
    // mostly 1.6–2.4×, in either order (and still 2.3–2.7× after 4,000 of its own): the second page
    // was measured on a server the first had warmed, and so was its /healthz.
    ctx.log(`history/${db}: warming up, ${ctx.sizes.historyWarmup} of each page`);
    for (const page of pages) {
      await runLoad({ url: server.url, serverPid: server.pid, path: pathOf(page), headers: user.headers, connections: 1, amount: ctx.sizes.historyWarmup, warmup: 0 });
    }
    const rows: ResultRow[] = [];
    for (const [i, page] of pages.entries()) {
      const path = pathOf(page);
      const body = bodies[i];
      const parts = chunks(n, CHUNKS, 1);
      ctx.log(`history/${db}: ${n} × GET ${page.variant}, in ${parts.length} chunks alternating with the bare SELECT`);
      const select = () => {
        const q = knex('function_deployments').select(LIST_COLUMNS).where({ function_id: made.functionId });
        if (page.before !== undefined) q.andWhere('version', '<', page.before);
        return q.orderBy('version', 'desc').limit(LIMIT);
      };
      await timeSequential(ctx.sizes.warmup, select);
      const loads: LoadResult[] = [];
      const floorSamples: number[] = [];
      let floorWallMs = 0;
      for (const amount of parts) {
        loads.push(await runLoad({ url: server.url, serverPid: server.pid, path, headers: user.headers, connections: 1, amount, warmup: 0 }));
        const t = await timeSequential(amount, select);
        floorSamples.push(...t.samples);
        floorWallMs += t.wallMs;
      }
      const load = mergeLoads(loads);
      const floor = { samples: floorSamples, wallMs: floorWallMs };
      const floorStat = summarize(floor.samples);
      const health = await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections: 1, amount: n, warmup: ctx.sizes.warmup });
      const ratio = { p50: round2(load.stat.p50 / floorStat.p50), p99: round2(load.stat.p99 / floorStat.p99) };
      rows.push(
        latencyRow({ scenario: 'history', db, variant: page.variant }, load.stat, load.wallMs, {
          throughput: { value: load.rps, unit: 'req/s' },
          errors: { non2xx: load.non2xx + health.non2xx, transport: load.transportErrors + health.transportErrors, statuses: load.statuses },
          floors: [
            {
              label: `the same SELECT with knex; the page is ${ratio.p50}× at p50, ${ratio.p99}× at p99`,
              stat: floorStat,
              throughput: { value: n / (floor.wallMs / 1000), unit: 'queries/s' },
            },
            { label: 'GET /healthz, 1 client, same server (the HTTP path alone)', stat: health.stat, throughput: { value: health.rps, unit: 'req/s' } },
          ],
          details: { cpu: load.cpu, ratioToFloor: ratio, versions, bytesPerResponse: JSON.stringify(body).length, chunks: parts.length },
        }),
      );
    }
    return rows;
  },
};

const round2 = (v: number) => Math.round(v * 100) / 100;
