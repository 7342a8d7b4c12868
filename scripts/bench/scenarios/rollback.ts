// 1. Rollback through HTTP between two built versions, one client, every request a real switch
//    (v2 live → 1 → 2 → 1 …). Floor: what any rollback must cost at least, an HTTP round trip to
//    the same server (GET /healthz, one client) plus a bare single-row UPDATE transaction on the
//    same database; the row shows both, their sum (percentile by percentile) and the ratio to it.
//    The three are measured in alternating chunks, so that a machine whose load changes during the
//    run weighs on each alike.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nowIso } from '../../../shared/db/time.ts';
import { ProcessDriver } from '../../../shared/runtime/process-driver.ts';
import { allocateVersion } from '../../../shared/domain/versions.ts';
import { mergeLoads, runLoad, warmUntilSettled, type LoadResult } from '../load.ts';
import { summarize, timeSequential, type Stat } from '../stats.ts';
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
    // Their files, as the server's process driver finds them: every switch announces the change,
    // and the server warms the version now live, as it would in production (a no-op once each
    // version has its instance); without files it would try, and log a failure, per rollback.
    const driver = new ProcessDriver({ artifactsDir: path.join(server.dataDir, 'artifacts'), instanceDir: path.join(server.dataDir, 'instances') });
    for (const version of [1, 2]) {
      const sourceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bench-rollback-'));
      fs.writeFileSync(path.join(sourceDir, 'index.mjs'), `export default async () => ({ version: ${version} });\n`);
      const deploymentId = await markBuilt(p, functionId, version);
      await driver.build({ functionId, deploymentId, version, sourceDir, function: { kind: 'node', entry: 'index.mjs' }, log: () => {}, signal: new AbortController().signal });
      fs.rmSync(sourceDir, { recursive: true, force: true });
    }

    const n = ctx.sizes.rollbacks;
    // even chunks: each starts with a switch to v1 while v2 is live
    const chunks = n >= 200 ? 4 : 1;
    const chunk = Math.floor(n / chunks / 2) * 2;
    ctx.log(`rollback/${db}: ${chunk * chunks} rollbacks, 1 client, in ${chunks} chunks alternating with the floors`);
    const touch = () => p.db.knex.transaction((trx) => trx('functions').where({ id: functionId }).update({ updated_at: nowIso() }));
    const rollbackLoad = (amount: number) =>
      runLoad({
        url: server.url,
        serverPid: server.pid,
        path: `/api/functions/${functionId}/rollback`,
        method: 'POST',
        headers: user.headers,
        requests: [{ body: JSON.stringify({ version: 1 }) }, { body: JSON.stringify({ version: 2 }) }],
        connections: 1,
        amount,
      });
    // Warm-up, not recorded, until the server has settled: rollbacks and /healthz alternating,
    // until the rollbacks' rate stops climbing (and the floor's transaction as often). Even rounds,
    // as the chunks: each ends with v2 live, so every measured request is still a real switch.
    const round = Math.max(2, Math.floor(ctx.sizes.rollbackSettleRound / 2) * 2);
    const settleRates = await warmUntilSettled(
      async () => {
        const loads = [await rollbackLoad(round), await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections: 1, amount: round })];
        await timeSequential(round, touch);
        return loads;
      },
      { maxRounds: ctx.sizes.rollbackSettleRounds },
    );
    ctx.log(`rollback/${db}: warm-up, ${settleRates.length} × ${round} rollbacks (and as many /healthz and bare transactions): ${settleRates.join(', ')} req/s`);
    const rollbacks: LoadResult[] = [];
    const healthz: LoadResult[] = [];
    const txn = { samples: [] as number[], wallMs: 0 };
    for (let i = 0; i < chunks; i++) {
      rollbacks.push(await rollbackLoad(chunk));
      healthz.push(await runLoad({ url: server.url, serverPid: server.pid, path: '/healthz', connections: 1, amount: chunk }));
      const t = await timeSequential(chunk, touch);
      txn.samples.push(...t.samples);
      txn.wallMs += t.wallMs;
    }
    const load = mergeLoads(rollbacks);
    const health = mergeLoads(healthz);
    const txnStat = summarize(txn.samples);
    const sum: Stat = {
      n: txnStat.n,
      p50: health.stat.p50 + txnStat.p50,
      p95: health.stat.p95 + txnStat.p95,
      p99: health.stat.p99 + txnStat.p99,
      mean: health.stat.mean + txnStat.mean,
      min: health.stat.min + txnStat.min,
      max: health.stat.max + txnStat.max,
    };
    const ratio = { p50: round2(load.stat.p50 / sum.p50), p99: round2(load.stat.p99 / sum.p99) };
    const live = await p.db.knex('functions as f')
      .join('function_deployments as d', 'd.id', 'f.active_deployment_id')
      .where('f.id', functionId)
      .first('d.version');
    const rolledBack = await p.db.knex('function_logs').where({ function_id: functionId, event: 'rolled_back' }).count({ c: '*' });

    return [
      latencyRow({ scenario: 'rollback', db, variant: `POST /rollback, ${clients(1)}` }, load.stat, load.wallMs, {
        throughput: { value: load.rps, unit: 'req/s' },
        errors: { non2xx: load.non2xx + health.non2xx, transport: load.transportErrors + health.transportErrors, statuses: load.statuses },
        floors: [
          { label: `GET /healthz + bare UPDATE transaction, summed; rollback is ${ratio.p50}× at p50, ${ratio.p99}× at p99`, stat: sum },
          { label: 'GET /healthz, 1 client', stat: health.stat, throughput: { value: health.rps, unit: 'req/s' } },
          {
            label: 'bare single-row UPDATE transaction (knex, same database)',
            stat: txnStat,
            throughput: { value: txn.samples.length / (txn.wallMs / 1000), unit: 'txn/s' },
          },
        ],
        details: {
          cpu: load.cpu,
          ratioToFloor: ratio,
          chunks,
          liveVersionAfter: Number(live?.version),
          rolledBackEventsWithWarmup: Number(rolledBack[0]?.c ?? 0),
          warmupRates: settleRates,
        },
      }),
    ];
  },
};

const round2 = (v: number) => Math.round(v * 100) / 100;
