// 5. Invocation of a small built function through POST /invoke (auth, the live version looked up,
//    the driver run, the invocation recorded), docker driver and process driver.
//    Floors: process: the same bootstrap spawned bare with the same event (and `node -e 0`, the
//    cost of a Node start alone); docker: the same container created, attached, started, waited
//    for and removed with dockerode, with the driver's options.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../../shared/config.ts';
import { BOOTSTRAP_FILE, encodeEvent, invocationEnv } from '../../../shared/runtime/protocol.ts';
import { removeFunctionImages, runContainerBare } from '../docker.ts';
import { mergeLoads, runLoad, type LoadResult } from '../load.ts';
import { deployAndWait, INVOKE_EVENT, smallFunction } from '../seed.ts';
import { summarize, timeSequential } from '../stats.ts';
import { clients, latencyRow, type ResultRow, type Scenario } from '../types.ts';

/** The figure and the floor alternate in this many chunks. */
const CHUNKS = 5;

/** `n` split into at most `parts` chunks of (nearly) equal size, none empty. */
function chunks(n: number, parts: number): number[] {
  const k = Math.max(1, Math.min(parts, n));
  return Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
}

/** Runs node with `args` in `cwd`, `stdin` written and closed; resolves with stdout once it exits. */
function runNode(args: string[], cwd: string, stdin: string, env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.resume();
    child.stdin.on('error', () => {});
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`node ${args.join(' ')} exited ${code}`))));
    child.stdin.end(stdin);
  });
}

export const invoke: Scenario = {
  name: 'invoke',
  title: 'Invocation, process driver and docker driver',
  servers: (_db, docker) => (docker ? ['runner-process', 'runner-docker'] : ['runner-process']),
  async run(ctx, db) {
    const rows: ResultRow[] = [];
    const archive = await smallFunction();
    const config = loadConfig(process.env);
    const body = JSON.stringify(INVOKE_EVENT);

    // process driver
    const server = await ctx.server(db, 'runner-process');
    const user = await server.newUser();
    const fn = await deployAndWait(server, user, `bench-invoke-${randomUUID().slice(0, 8)}`, archive);
    const artifactDir = path.join(server.dataDir, 'artifacts', fn.functionId, `v${fn.version}`);
    const n = ctx.sizes.invokeProcess;
    // The figure and its floors in alternating chunks: the machine's drift over the run (other
    // work, page cache, the engine's state) then touches both alike.
    const env = invocationEnv({ functionId: fn.functionId, version: fn.version, deploymentId: fn.deploymentId, requestId: randomUUID() });
    const spawnBootstrap = () =>
      runNode([`--max-old-space-size=${config.runtime.memoryMb}`, BOOTSTRAP_FILE], artifactDir, encodeEvent(INVOKE_EVENT), env);
    const bootstrapSamples: number[] = [];
    const bareSamples: number[] = [];
    for (const connections of ctx.sizes.invokeProcessConnections) {
      ctx.log(`invoke/${db}: ${n} invocations, process driver, ${clients(connections)}${connections === 1 ? ', interleaved with the floors' : ''}`);
      const loads: LoadResult[] = [];
      for (const chunk of chunks(n, connections === 1 ? CHUNKS : 1)) {
        loads.push(
          await runLoad({
            url: server.url,
            serverPid: server.pid,
            path: `/api/functions/${fn.functionId}/invoke`,
            method: 'POST',
            headers: user.headers,
            body,
            connections,
            amount: chunk,
            warmup: loads.length === 0 ? Math.min(ctx.sizes.warmup, 10) : 0,
          }),
        );
        if (connections !== 1) continue;
        bootstrapSamples.push(...(await timeSequential(chunk, spawnBootstrap)).samples);
        bareSamples.push(...(await timeSequential(chunk, () => runNode(['-e', '0'], artifactDir, ''))).samples);
      }
      const load = mergeLoads(loads);
      rows.push(
        latencyRow({ scenario: 'invoke', db, variant: `process driver, ${clients(connections)}` }, load.stat, load.wallMs, {
          throughput: { value: load.rps, unit: 'req/s' },
          errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
          details: { cpu: load.cpu },
        }),
      );
    }
    const processFloors = [
      { label: 'the bootstrap spawned bare, same event', stat: summarize(bootstrapSamples) },
      { label: 'node -e 0', stat: summarize(bareSamples) },
    ];
    for (const row of rows) row.floors = processFloors;

    // docker driver
    if (ctx.dockerUnavailable) {
      ctx.note(`docker driver skipped: ${ctx.dockerUnavailable}`);
      return rows;
    }
    const dockerServer = await ctx.server(db, 'runner-docker');
    const dockerUser = await dockerServer.newUser();
    const dn = ctx.sizes.invokeDocker;
    let functionId: string | undefined;
    try {
      ctx.log(`invoke/${db}: building the function with the docker driver`);
      const dfn = await deployAndWait(dockerServer, dockerUser, `bench-invoke-${randomUUID().slice(0, 8)}`, archive);
      functionId = dfn.functionId;
      ctx.log(`invoke/${db}: ${dn} invocations, docker driver, 1 client, interleaved with ${dn} bare containers (the floor)`);
      const loads: LoadResult[] = [];
      const samples: number[] = [];
      for (const chunk of chunks(dn, CHUNKS)) {
        loads.push(
          await runLoad({
            url: dockerServer.url,
            serverPid: dockerServer.pid,
            path: `/api/functions/${dfn.functionId}/invoke`,
            method: 'POST',
            headers: dockerUser.headers,
            body,
            connections: 1,
            amount: chunk,
            warmup: loads.length === 0 ? Math.min(ctx.sizes.warmup, 2) : 0,
          }),
        );
        const bare = await timeSequential(chunk, async () => {
          const code = await runContainerBare(dfn.imageTag!, { ...config.runtime, event: INVOKE_EVENT });
          if (code !== 0) throw new Error(`the bare container exited ${code}`);
        });
        samples.push(...bare.samples);
      }
      const load = mergeLoads(loads);
      const floor = { label: 'the same container, bare (create, attach, start, wait, remove)', stat: summarize(samples) };
      rows.push(
        latencyRow({ scenario: 'invoke', db, variant: 'docker driver, 1 client' }, load.stat, load.wallMs, {
          throughput: { value: load.rps, unit: 'req/s' },
          errors: { non2xx: load.non2xx, transport: load.transportErrors, statuses: load.statuses },
          floors: [floor],
          details: { cpu: load.cpu },
        }),
      );
    } finally {
      if (functionId) await removeFunctionImages([functionId]);
    }
    return rows;
  },
};
