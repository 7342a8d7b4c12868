// 2. Deploy requests without a build (no runner on this server): POST /deploy (a version allocated
//    under the function's lock, a presigned URL signed) and POST …/complete (S3 asked for the
//    object's size, the object streamed back to hash it, the build queued), each under 1, 16 and
//    64 concurrent clients, over 8 functions in turn. The uploads between the two are made
//    beforehand and not measured. Floor: Hono answering /healthz under the same load.
import { archiveKey } from '../../../shared/domain/model.ts';
import type { BenchServer, BenchUser } from '../harness.ts';
import { runLoad, type LoadResult } from '../load.ts';
import { forEachLimited } from '../stats.ts';
import { sha256, smallFunction } from '../seed.ts';
import { clients, latencyRow, type ResultRow, type Scenario } from '../types.ts';

/** Deploys go to this many functions in turn: concurrent deploys of one function queue on its lock. */
const FUNCTIONS = 8;

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
  // Not measured: the uploads a client makes between the two requests.
  await forEachLimited(created, 16, (d) => server.platform.storage.putBuffer(archiveKey(d.id, d.version), archive));
  return { load, created };
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
    const n = ctx.sizes.deploysPerLevel;
    const knex = server.platform.db.knex;

    // Warm-up, not recorded: both routes and /healthz once through, on functions of their own.
    const w = ctx.sizes.warmup;
    const warm = await deploys(server, user, archive, { connections: Math.min(16, w), amount: w, prefix: 'bench-warmup' });
    const warmDone = await completes(server, user, warm.created, Math.min(16, w));
    const warmHealth = await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections: Math.min(16, w), amount: w });
    if (warm.load.non2xx + warmDone.load.non2xx + warmHealth.non2xx > 0) throw new Error('the deploy warm-up failed');

    for (const connections of ctx.sizes.deployConnections) {
      ctx.log(`deploy/${db}: ${n} × POST /deploy, ${clients(connections)}`);
      const d = await deploys(server, user, archive, { connections, amount: n, prefix: 'bench-deploy' });
      ctx.log(`deploy/${db}: ${d.created.length} × POST /complete, ${clients(connections)}`);
      const c = await completes(server, user, d.created, connections);
      const queued = await knex('function_deployments as d')
        .join('functions as f', 'f.id', 'd.function_id')
        .where({ 'f.user_id': user.userId, 'd.status': 'building' })
        .count({ c: '*' });

      ctx.log(`deploy/${db}: floor, ${n} × GET /healthz, ${clients(connections)}`);
      const health = await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections, amount: n });
      const floor = { label: `GET /healthz, ${clients(connections)}`, stat: health.stat, throughput: { value: health.rps, unit: 'req/s' } };
      const row = (variant: string, load: LoadResult, details: Record<string, unknown>) =>
        latencyRow({ scenario: 'deploy', db, variant }, load.stat, load.wallMs, {
          throughput: { value: load.rps, unit: 'req/s' },
          errors: { non2xx: load.non2xx + health.non2xx, transport: load.transportErrors + health.transportErrors, statuses: load.statuses },
          floors: [floor],
          details: { connections, functions: FUNCTIONS, cpu: load.cpu, healthzCpu: health.cpu, ...details },
        });
      rows.push(row(`POST /deploy, ${clients(connections)}`, d.load, { versionsAllocated: d.created.length }));
      rows.push(row(`POST /complete, ${clients(connections)}`, c.load, { overdrawn: c.overdrawn, queuedForBuildSoFar: Number(queued[0]?.c ?? 0) }));
    }
    return rows;
  },
};
