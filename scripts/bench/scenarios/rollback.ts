// 1. Rollback through HTTP between two built versions, one client, every request a real switch
//    (v2 live → 1 → 2 → 1 …). Floor: a bare single-row UPDATE transaction on the same database.
import { nowIso } from '../../../shared/db/time.ts';
import { allocateVersion } from '../../../shared/domain/versions.ts';
import { runLoad } from '../load.ts';
import { summarize, timeSequential } from '../stats.ts';
import { markBuilt } from '../seed.ts';
import { clients, latencyRow, type Scenario } from '../types.ts';

export const rollback: Scenario = {
  name: 'rollback',
  title: 'Rollback through HTTP between two built versions',
  servers: () => ['api'],
  async run(ctx, db) {
    const server = await ctx.server(db, 'api');
    const user = await server.newUser();
    const p = server.platform;
    // two versions allocated the way /deploy does, then recorded as built the way a runner does
    const first = await allocateVersion(p.db, { userId: user.userId, name: 'bench-rollback', status: 'pending_upload' });
    await allocateVersion(p.db, { userId: user.userId, name: 'bench-rollback', status: 'pending_upload' });
    const functionId = first.fn.id;
    await markBuilt(p, functionId, 1);
    await markBuilt(p, functionId, 2);

    const n = ctx.sizes.rollbacks;
    ctx.log(`rollback/${db}: ${n} rollbacks, 1 client`);
    const load = await runLoad({
      url: server.url,
      serverPid: server.pid,
      path: `/api/functions/${functionId}/rollback`,
      method: 'POST',
      headers: user.headers,
      requests: [{ body: JSON.stringify({ version: 1 }) }, { body: JSON.stringify({ version: 2 }) }],
      connections: 1,
      amount: n,
      warmup: ctx.sizes.warmup,
    });
    const live = await p.db.knex('functions as f')
      .join('function_deployments as d', 'd.id', 'f.active_deployment_id')
      .where('f.id', functionId)
      .first('d.version');
    const rolledBack = await p.db.knex('function_logs').where({ function_id: functionId, event: 'rolled_back' }).count({ c: '*' });

    ctx.log(`rollback/${db}: floor, ${n} single-row UPDATE transactions`);
    const touch = () => p.db.knex.transaction((trx) => trx('functions').where({ id: functionId }).update({ updated_at: nowIso() }));
    await timeSequential(ctx.sizes.warmup, touch);
    const floor = await timeSequential(n, touch);
    return [
      latencyRow({ scenario: 'rollback', db, variant: `POST /rollback, ${clients(1)}` }, load.stat, load.wallMs, {
        throughput: { value: load.rps, unit: 'req/s' },
        errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
        floors: [
          {
            label: 'bare single-row UPDATE transaction (knex, same database)',
            stat: summarize(floor.samples),
            throughput: { value: n / (floor.wallMs / 1000), unit: 'txn/s' },
          },
        ],
        details: { cpu: load.cpu, liveVersionAfter: Number(live?.version), rolledBackEventsWithWarmup: Number(rolledBack[0]?.c ?? 0), warmup: ctx.sizes.warmup },
      }),
    ];
  },
};
