// 3. Upload → active, end to end, for a small function: POST /deploy, PUT to the presigned URL,
//    POST /complete, then polling the deployment (every 10 ms) until it is active, one run after
//    another, with the runner inside the server (as `npm start` runs it) on its defaults. On SQLite
//    the runner finds builds by polling: each run starts at a random moment of the poll interval
//    (a pause before it, not measured), or back-to-back runs would each wait a whole interval.
//    Floors: process driver: unpacking the same archive (the validating extractor) by hand;
//    docker driver with the registry: what a person does by hand with the same files, after every
//    run — `docker build` of FROM + COPY, `docker push` to the same registry, then `docker run` of
//    the image until the handler answers (the instance's own container options).
//    The docker figures: upload → image in the registry (its manifest polled every 5 ms, so the
//    platform's own log is not trusted for it) and upload → live (the readiness start included).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { extractArchive } from '../../../shared/archive/extract.ts';
import { loadConfig } from '../../../shared/config.ts';
import { RegistryClient } from '../../../shared/runtime/registry.ts';
import { bareContainerColdStart, buildByHand, docker, pushByHand, removeFunctionImages } from '../docker.ts';
import type { BenchServer, BenchUser, DbKind } from '../harness.ts';
import { complete, deleteFunction, requestAndUpload, smallFunction, waitUntilActive } from '../seed.ts';
import { sleep, summarize, timeSequential } from '../stats.ts';
import { benchRegistry } from '../servers.ts';
import { latencyRow, type Floor, type ResultRow, type Scenario } from '../types.ts';

/** The function a run made, and its owner: deleted afterwards. */
interface Made {
  functionId?: string;
  user?: BenchUser;
}

async function endToEnd(
  server: BenchServer,
  opts: {
    runs: number;
    archive: Buffer;
    jitterMs: number;
    made: Made;
    after?: (run: number) => Promise<void>;
    /** the registry the server pushes to: when its manifest of the version appears is recorded */
    registry?: RegistryClient;
  },
) {
  const user = await server.newUser();
  opts.made.user = user;
  const name = `bench-e2e-${randomUUID().slice(0, 8)}`;
  const total: number[] = [];
  const phases = { deployAndUpload: [] as number[], complete: [] as number[], untilActive: [] as number[] };
  const toRegistry: number[] = [];
  let measuredMs = 0;
  for (let i = 0; i < opts.runs; i++) {
    await sleep(Math.random() * opts.jitterMs);
    const t0 = performance.now();
    const d = await requestAndUpload(server, user, name, opts.archive);
    opts.made.functionId = d.functionId;
    const t1 = performance.now();
    await complete(server, user, d);
    const t2 = performance.now();
    const stop = new AbortController();
    const inRegistry = opts.registry ? manifestSeen(opts.registry, `function-${d.functionId}-v${d.version}`, stop.signal) : null;
    const built = await waitUntilActive(server, user, d, { intervalMs: 10 }).finally(() => stop.abort());
    const t3 = performance.now();
    if (inRegistry) {
      const seen = await inRegistry;
      if (seen === null) throw new Error(`version ${d.version} went live but its manifest never showed in the registry`);
      toRegistry.push(seen - t0);
    }
    void built;
    total.push(t3 - t0);
    measuredMs += t3 - t0;
    phases.deployAndUpload.push(t1 - t0);
    phases.complete.push(t2 - t1);
    phases.untilActive.push(t3 - t2);
    await opts.after?.(i);
  }
  const p50s = Object.fromEntries(Object.entries(phases).filter(([, v]) => v.length > 0).map(([k, v]) => [`${k}P50Ms`, summarize(v).p50]));
  return { stat: summarize(total), measuredMs, phases: p50s, toRegistry: toRegistry.length > 0 ? summarize(toRegistry) : null };
}

/** When (performance.now()) the manifest first answered a HEAD, polled every 5 ms; null if stopped first. */
async function manifestSeen(registry: RegistryClient, repository: string, stop: AbortSignal): Promise<number | null> {
  while (!stop.aborted) {
    if ((await registry.manifestDigest(repository, 'latest').catch(() => null)) !== null) return performance.now();
    await sleep(5);
  }
  // the run ended: one last look (the manifest lands before the readiness start, so it is there)
  return (await registry.manifestDigest(repository, 'latest').catch(() => null)) !== null ? performance.now() : null;
}

/** Unpacks `archive` into a fresh temporary directory; returns it. */
async function unpack(archive: Buffer): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bench-unpack-'));
  await extractArchive(Readable.from([archive]), dir);
  return dir;
}

async function unpackFloor(archive: Buffer, runs: number): Promise<Floor> {
  const dirs: string[] = [];
  const { samples } = await timeSequential(runs, async () => dirs.push(await unpack(archive)));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  return { label: 'unpacking the same archive by hand (extractArchive)', stat: summarize(samples) };
}

/**
 * What a person does by hand with the same files, once after every end-to-end run (interleaved,
 * so the engine's drift over the run — vfs copies, page cache — touches both alike): `docker
 * build` of FROM + COPY (a fresh nonce file keeps it out of the build cache), `docker push` to the
 * same registry, `docker run` until the handler answers.
 */
async function byHandFloors(archive: Buffer, registry: string) {
  const source = await unpack(archive);
  const config = loadConfig(process.env);
  const id = randomUUID().slice(0, 8);
  const tags: string[] = [];
  const build: number[] = [];
  const push: number[] = [];
  const buildPush: number[] = [];
  const run: number[] = [];
  const whole: number[] = [];
  const body = JSON.stringify({ name: 'floor' });
  return {
    async after(n: number) {
      const tag = `${registry}/containerpub-bench-floor-${id}-v${n + 1}:latest`;
      const t0 = performance.now();
      await buildByHand(source, { baseImage: config.runtime.baseImage, tag });
      tags.push(tag);
      const t1 = performance.now();
      await pushByHand(tag);
      const t2 = performance.now();
      const ran = await bareContainerColdStart(tag, {
        limits: { memoryMb: config.runtime.memoryMb, cpus: config.runtime.cpus, pidsLimit: config.runtime.pidsLimit },
        body,
      });
      build.push(t1 - t0);
      push.push(t2 - t1);
      buildPush.push(t2 - t0);
      run.push(ran);
      whole.push(t2 - t0 + ran);
    },
    floors(): { buildPush: Floor; whole: Floor; all: Floor[] } {
      const f = (label: string, samples: number[]): Floor => ({ label, stat: summarize(samples) });
      const bp = f('by hand: docker build (FROM + COPY) + docker push', buildPush);
      const w = f('by hand: docker build + docker push + docker run until the handler answers', whole);
      return {
        buildPush: bp,
        whole: w,
        all: [f('by hand: docker build of FROM + COPY', build), f('by hand: docker push', push), bp, f('by hand: docker run until the handler answers', run), w],
      };
    },
    async close() {
      const client = new RegistryClient(registry);
      for (const tag of tags) {
        await docker().getImage(tag).remove({ force: true }).catch(() => {});
        const repo = tag.slice(registry.length + 1).replace(/:latest$/, '');
        await client.deleteTag(repo, 'latest').catch(() => {});
      }
      fs.rmSync(source, { recursive: true, force: true });
    },
  };
}

export const e2e: Scenario = {
  name: 'e2e',
  title: 'Upload → active, end to end (process and docker drivers)',
  servers: (_db, dockerAvailable) => (dockerAvailable ? ['runner-process', 'runner-docker-registry'] : ['runner-process']),
  async run(ctx, db: DbKind) {
    const archive = await smallFunction();
    const rows: ResultRow[] = [];
    const pollMs = ctx.sizes.runnerPollMs;
    const polled = db === 'sqlite';
    const jitterMs = polled ? pollMs : 0;
    const wakeUp = polled ? `polling (RUNNER_POLL_MS=${pollMs}), runs started at random moments of the interval` : 'NOTIFY';

    const processRuns = ctx.sizes.e2eProcessRuns;
    ctx.log(`e2e/${db}: ${processRuns} runs, process driver`);
    const processServer = await ctx.server(db, 'runner-process');
    const proc = await endToEnd(processServer, { runs: processRuns, archive, jitterMs, made: {} });
    rows.push(
      latencyRow({ scenario: 'e2e', db, variant: 'process driver, upload → active' }, proc.stat, proc.measuredMs, {
        throughput: { value: processRuns / (proc.measuredMs / 1000), unit: 'deploys/s' },
        floors: [await unpackFloor(archive, Math.max(processRuns, 10))],
        details: { ...proc.phases, wakeUp },
      }),
    );

    if (ctx.dockerUnavailable) {
      ctx.note(`docker driver skipped: ${ctx.dockerUnavailable}`);
      return rows;
    }
    const registryAddress = benchRegistry();
    const registry = new RegistryClient(registryAddress);
    if (!(await registry.ping())) {
      ctx.note(`docker driver skipped: no registry answers at ${registryAddress} (BENCH_REGISTRY)`);
      return rows;
    }
    const dockerRuns = ctx.sizes.e2eDockerRuns;
    ctx.log(`e2e/${db}: ${dockerRuns} runs, docker driver with the registry ${registryAddress}, each followed by a build, push and run by hand (the floors)`);
    const dockerServer = await ctx.server(db, 'runner-docker-registry');
    const made: Made = {};
    const byHand = await byHandFloors(archive, registryAddress);
    try {
      const built = await endToEnd(dockerServer, { runs: dockerRuns, archive, jitterMs, made, after: byHand.after, registry });
      const floors = byHand.floors();
      const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? Number((a / b).toFixed(3)) : null);
      rows.push(
        latencyRow({ scenario: 'e2e', db, variant: 'docker driver + registry, upload → image in the registry' }, built.toRegistry!, built.measuredMs, {
          floors: [floors.buildPush],
          details: { wakeUp, target: '≤ 0.25× the floor', ratioP50: ratio(built.toRegistry?.p50, floors.buildPush.stat?.p50) },
        }),
        latencyRow({ scenario: 'e2e', db, variant: 'docker driver + registry, upload → live' }, built.stat, built.measuredMs, {
          throughput: { value: dockerRuns / (built.measuredMs / 1000), unit: 'deploys/s' },
          floors: floors.all,
          details: { ...built.phases, wakeUp, target: '< the whole floor', ratioP50: ratio(built.stat.p50, floors.whole.stat?.p50) },
        }),
      );
    } finally {
      await byHand.close();
      if (made.functionId) {
        // every activation pre-warms the new live version: its containers hold the images, which
        // the engine will not remove (even forced) while they run. DELETE stops them first.
        if (made.user) await deleteFunction(dockerServer, made.user, made.functionId).catch((err) => ctx.log(`could not delete ${made.functionId}: ${String(err)}`));
        await removeFunctionImages([made.functionId]);
      }
    }
    return rows;
  },
};
