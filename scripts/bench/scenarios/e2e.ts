// 3. Upload → active, end to end, for a small function: POST /deploy, PUT to the presigned URL,
//    POST /complete, then polling the deployment (every 10 ms) until it is active, one run after
//    another, with the runner inside the server (as `npm start` runs it) on its defaults. On SQLite
//    the runner finds builds by polling: each run starts at a random moment of the poll interval
//    (a pause before it, not measured), or back-to-back runs would each wait a whole interval.
//    Floors: process driver: unpacking the same archive (the validating extractor) by hand;
//    docker driver: `docker build` of the same context and generated Dockerfile by hand, and of
//    FROM + COPY alone (the generated Dockerfile's LABEL step is one more step on the engine).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { extractArchive } from '../../../shared/archive/extract.ts';
import { loadConfig } from '../../../shared/config.ts';
import { buildByHand, docker, removeFunctionImages } from '../docker.ts';
import type { BenchServer, BenchUser, DbKind } from '../harness.ts';
import { complete, deleteFunction, requestAndUpload, smallFunction, waitUntilActive } from '../seed.ts';
import { sleep, summarize, timeSequential } from '../stats.ts';
import { latencyRow, type Floor, type ResultRow, type Scenario } from '../types.ts';

/** The function a run made, and its owner: deleted afterwards. */
interface Made {
  functionId?: string;
  user?: BenchUser;
}

async function endToEnd(
  server: BenchServer,
  opts: { runs: number; archive: Buffer; jitterMs: number; made: Made; after?: (run: number) => Promise<void> },
) {
  const user = await server.newUser();
  opts.made.user = user;
  const name = `bench-e2e-${randomUUID().slice(0, 8)}`;
  const total: number[] = [];
  const phases = { deployAndUpload: [] as number[], complete: [] as number[], untilActive: [] as number[], engineBuild: [] as number[] };
  let measuredMs = 0;
  for (let i = 0; i < opts.runs; i++) {
    await sleep(Math.random() * opts.jitterMs);
    const t0 = performance.now();
    const d = await requestAndUpload(server, user, name, opts.archive);
    opts.made.functionId = d.functionId;
    const t1 = performance.now();
    await complete(server, user, d);
    const t2 = performance.now();
    const built = await waitUntilActive(server, user, d, { intervalMs: 10 });
    const t3 = performance.now();
    // the docker driver logs how long the engine took: "built <tag> in N ms"
    const engine = /\bbuilt \S+ in (\d+) ms/.exec(built.buildLogs);
    if (engine) phases.engineBuild.push(Number(engine[1]));
    total.push(t3 - t0);
    measuredMs += t3 - t0;
    phases.deployAndUpload.push(t1 - t0);
    phases.complete.push(t2 - t1);
    phases.untilActive.push(t3 - t2);
    await opts.after?.(i);
  }
  const p50s = Object.fromEntries(Object.entries(phases).filter(([, v]) => v.length > 0).map(([k, v]) => [`${k}P50Ms`, summarize(v).p50]));
  return { stat: summarize(total), measuredMs, phases: p50s };
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
 * The docker builds by hand, one of each after every end-to-end run (interleaved, so the engine's
 * drift over the run — vfs copies, page cache — touches both alike).
 */
async function buildFloors(archive: Buffer) {
  const source = await unpack(archive);
  const baseImage = loadConfig(process.env).runtime.baseImage;
  const labelFunctionId = `bench-floor-${randomUUID()}`;
  const tags: string[] = [];
  const full: number[] = [];
  const bare: number[] = [];
  const timed = async (samples: number[], build: () => Promise<string>) => {
    const t0 = performance.now();
    tags.push(await build());
    samples.push(performance.now() - t0);
  };
  return {
    async after(run: number) {
      await timed(full, () => buildByHand(source, { baseImage, labelFunctionId, version: run + 1 }));
      await timed(bare, () => buildByHand(source, { baseImage, labelFunctionId, version: run + 1, labelStep: false }));
    },
    floors(): Floor[] {
      return [
        { label: 'docker build of the same context and Dockerfile by hand', stat: summarize(full) },
        { label: 'docker build of FROM + COPY alone', stat: summarize(bare) },
      ];
    },
    async close() {
      for (const tag of tags) await docker().getImage(tag).remove({ force: true }).catch(() => {});
      await removeFunctionImages([labelFunctionId]);
      fs.rmSync(source, { recursive: true, force: true });
    },
  };
}

export const e2e: Scenario = {
  name: 'e2e',
  title: 'Upload → active, end to end (process and docker drivers)',
  servers: (_db, dockerAvailable) => (dockerAvailable ? ['runner-process', 'runner-docker'] : ['runner-process']),
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
    const dockerRuns = ctx.sizes.e2eDockerRuns;
    ctx.log(`e2e/${db}: ${dockerRuns} runs, docker driver, each followed by two docker builds by hand (the floors)`);
    const dockerServer = await ctx.server(db, 'runner-docker');
    const made: Made = {};
    const byHand = await buildFloors(archive);
    try {
      const built = await endToEnd(dockerServer, { runs: dockerRuns, archive, jitterMs, made, after: byHand.after });
      rows.push(
        latencyRow({ scenario: 'e2e', db, variant: 'docker driver, upload → active' }, built.stat, built.measuredMs, {
          throughput: { value: dockerRuns / (built.measuredMs / 1000), unit: 'deploys/s' },
          floors: byHand.floors(),
          details: { ...built.phases, wakeUp, registry: 'none (REGISTRY unset: no push)' },
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
