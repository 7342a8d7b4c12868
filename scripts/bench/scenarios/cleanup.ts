// 6. Retention cleanup over many functions: one runCleanup (the scheduled job's code) over a
//    database holding F functions × V built versions, KEEP_LAST_N=K, so F×(V−K) versions lose their
//    image and archive; and its dry run (the planning alone). Each runs in this process against a
//    database of its own, with S3 (s3rver) in the server process, as a runner would.
//    Cleanup works in batches of up to 1,000 versions (shared/domain/retention.ts):
//    - ARCHIVE_MODE=delete over 1,000 × 20: one S3 DeleteObjects per 1,000 versions (the objects
//      are not seeded: s3rver answers for a missing key like for any other, without the unlink);
//    - ARCHIVE_MODE=prefix (the default) over 100 × 20 with real objects: a COPY each, then one
//      DeleteObjects per 1,000 originals.
//    Process driver, so removing an image is removing an unpacked directory (none exist here).
//    Floors: the same S3 calls bare, as many at once as the cleanup makes (CLEANUP_CONCURRENCY
//    copies; DeleteObjects one request at a time).
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { nowIso } from '../../../shared/db/time.ts';
import { archivePrefixKey, runCleanup, type CleanupSummary } from '../../../shared/domain/retention.ts';
import type { Platform } from '../../../shared/platform.ts';
import { DELETE_OBJECTS_MAX } from '../../../shared/storage/s3-storage.ts';
import { ProcessDriver } from '../../../shared/runtime/process-driver.ts';
import { openScratchPlatform, type BenchServer } from '../harness.ts';
import { builtFunctionRows, insertInBatches, smallFunction } from '../seed.ts';
import { forEachLimited, summarize } from '../stats.ts';
import { withCpu } from '../load.ts';
import type { Context, Floor, ResultRow, Scenario } from '../types.ts';

interface Seeded {
  /** s3 keys of the versions cleanup will archive */
  doomedKeys: string[];
  seedMs: number;
}

async function seed(p: Platform, functions: number, versions: number, keep: number): Promise<Seeded> {
  const t0 = performance.now();
  const userId = randomUUID();
  await p.db.knex('users').insert({ id: userId, email: `bench-cleanup-${userId}@example.com`, password_hash: 'x', created_at: nowIso() });
  const fns: Record<string, unknown>[] = [];
  const deployments: Record<string, unknown>[] = [];
  const doomedKeys: string[] = [];
  for (let i = 0; i < functions; i++) {
    const made = builtFunctionRows(userId, `bench-cleanup-${i}`, versions);
    fns.push(made.fn);
    deployments.push(...made.deployments);
    for (const d of made.deployments) if (d.version <= versions - keep) doomedKeys.push(d.s3_key);
  }
  await insertInBatches(p.db.knex, 'functions', fns, 200);
  // 26 columns a row: 500 rows stay under SQLite's 32,766 bound variables
  await insertInBatches(p.db.knex, 'function_deployments', deployments, 500);
  return { doomedKeys, seedMs: performance.now() - t0 };
}

async function statusCounts(p: Platform): Promise<Record<string, number>> {
  const rows = (await p.db.knex('function_deployments').select('status').count({ c: '*' }).groupBy('status')) as { status: string; c: unknown }[];
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.c)]));
}

function counts(s: CleanupSummary) {
  const { plan, kept, ...rest } = s;
  return { ...rest, planned: plan.length, kept: kept.length };
}

/**
 * One runCleanup in this process (as a runner runs it); with the cores it kept busy here and in
 * the server process, where s3rver answers its S3 calls.
 */
async function timedCleanup(p: Platform, dryRun: boolean, s3Pid: number) {
  const driver = new ProcessDriver({ artifactsDir: path.join(p.config.dataDir, 'artifacts'), instanceDir: p.config.runtime.instanceDir });
  const t0 = performance.now();
  const run = await withCpu(s3Pid, () => runCleanup(p, driver, { dryRun, holder: `bench-${process.pid}` }));
  return { summary: run.value, ms: performance.now() - t0, cpu: { cleanupCores: run.benchCores, s3rverCores: run.serverCores } };
}

/** `calls` run over `keys`, `concurrency` at once: per-key latency, and keys per second. */
async function bareS3(keys: string[], concurrency: number, calls: (key: string) => Promise<void>) {
  const samples: number[] = [];
  const t0 = performance.now();
  await forEachLimited(keys, concurrency, async (key) => {
    const s = performance.now();
    await calls(key);
    samples.push(performance.now() - s);
  });
  const wallMs = performance.now() - t0;
  return { stat: summarize(samples), rate: keys.length / (wallMs / 1000), wallMs };
}

/** The delete mode's S3 work bare: DeleteObjects of as many missing keys, 1,000 a request, one at a time. */
async function deleteFloor(ctx: Context, server: BenchServer, n: number): Promise<Floor> {
  ctx.log(`cleanup/${server.db}: floor, DeleteObjects of ${n} missing keys`);
  const keys = Array.from({ length: n }, (_, i) => `bench-floor/${randomUUID()}/v${i}/function.tar.gz`);
  const t0 = performance.now();
  await server.platform.storage.deleteMany(keys);
  const wallMs = performance.now() - t0;
  return {
    label: `bare S3 DeleteObjects of as many missing keys, ${DELETE_OBJECTS_MAX.toLocaleString('en-US')} a request`,
    ms: wallMs,
    throughput: { value: n / (wallMs / 1000), unit: 'keys/s' },
  };
}

/** The prefix mode's S3 work bare: as many fresh objects each copied, then DeleteObjects of the originals. */
async function moveFloor(ctx: Context, p: Platform, keys: string[], archive: Buffer): Promise<Floor> {
  const concurrency = p.config.cleanup.concurrency;
  ctx.log(`cleanup: floor, ${keys.length} bare COPYs (${concurrency} at once) + DeleteObjects`);
  const floorKeys = keys.map((k) => `bench-floor/${k}`);
  await forEachLimited(floorKeys, 16, (key) => p.storage.putBuffer(key, archive));
  const t0 = performance.now();
  await bareS3(floorKeys, concurrency, (key) => p.storage.copy(key, archivePrefixKey(key)));
  await p.storage.deleteMany(floorKeys);
  const wallMs = performance.now() - t0;
  return {
    label: `bare S3 COPY of as many objects, ${concurrency} at once, then DeleteObjects of the originals`,
    ms: wallMs,
    throughput: { value: keys.length / (wallMs / 1000), unit: 'objects/s' },
  };
}

export const cleanup: Scenario = {
  name: 'cleanup',
  title: 'Retention cleanup over many functions × versions',
  servers: () => ['api'],
  async run(ctx, db) {
    const rows: ResultRow[] = [];
    const server = await ctx.server(db, 'api');
    const { cleanupFunctions: F, cleanupVersions: V, cleanupKeep: K, cleanupPrefixFunctions: FP } = ctx.sizes;
    const keepEnv = { KEEP_LAST_N: String(K) };

    // ARCHIVE_MODE=delete, the big one
    const scratch = await openScratchPlatform(server, { ...keepEnv, ARCHIVE_MODE: 'delete' });
    try {
      const p = scratch.platform;
      ctx.log(`cleanup/${db}: seeding ${F} functions × ${V} versions`);
      const seeded = await seed(p, F, V, K);
      ctx.log(`cleanup/${db}: dry run, then cleanup (ARCHIVE_MODE=delete)`);
      const dry = await timedCleanup(p, true, server.pid);
      const real = await timedCleanup(p, false, server.pid);
      const after = await statusCounts(p);
      const done = real.summary.versionsArchived + real.summary.archivesDeleted;
      if (done !== seeded.doomedKeys.length || real.summary.errors > 0) {
        throw new Error(`cleanup archived ${done} of ${seeded.doomedKeys.length} versions with ${real.summary.errors} errors`);
      }
      const base = { scenario: 'cleanup' as const, db, p50: null, p95: null, p99: null, mean: null, max: null, errors: { non2xx: 0, transport: 0 } };
      rows.push({
        ...base,
        variant: `ARCHIVE_MODE=delete, ${F.toLocaleString('en-US')} fn × ${V} versions, keep ${K}`,
        n: done,
        durationMs: real.ms,
        throughput: { value: done / (real.ms / 1000), unit: 'versions/s' },
        floors: [await deleteFloor(ctx, server, seeded.doomedKeys.length)],
        details: { ...counts(real.summary), cpu: real.cpu, statusesAfter: after, seedMs: seeded.seedMs, concurrency: p.config.cleanup.concurrency },
      });
      rows.push({
        ...base,
        variant: `dry run (planning only), ${F.toLocaleString('en-US')} fn × ${V} versions`,
        n: dry.summary.plan.length,
        durationMs: dry.ms,
        throughput: { value: dry.summary.plan.length / (dry.ms / 1000), unit: 'versions/s' },
        floors: [],
        details: counts(dry.summary),
      });
    } finally {
      await scratch.close();
    }

    // ARCHIVE_MODE=prefix (the default), with real objects
    const prefix = await openScratchPlatform(server, { ...keepEnv, ARCHIVE_MODE: 'prefix' });
    try {
      const p = prefix.platform;
      const archive = await smallFunction();
      ctx.log(`cleanup/${db}: seeding ${FP} functions × ${V} versions and their archives`);
      const seeded = await seed(p, FP, V, K);
      await forEachLimited(seeded.doomedKeys, 16, (key) => p.storage.putBuffer(key, archive));
      ctx.log(`cleanup/${db}: cleanup (ARCHIVE_MODE=prefix)`);
      const real = await timedCleanup(p, false, server.pid);
      const done = real.summary.versionsArchived;
      if (done !== seeded.doomedKeys.length || real.summary.errors > 0 || real.summary.objectsMoved !== done) {
        throw new Error(`prefix cleanup archived ${done} of ${seeded.doomedKeys.length} versions (${real.summary.objectsMoved} moved, ${real.summary.errors} errors)`);
      }
      const concurrency = p.config.cleanup.concurrency;
      const floor = await moveFloor(ctx, p, seeded.doomedKeys, archive);
      rows.push({
        scenario: 'cleanup',
        db,
        variant: `ARCHIVE_MODE=prefix, ${FP.toLocaleString('en-US')} fn × ${V} versions, keep ${K}, real objects`,
        n: done,
        p50: null,
        p95: null,
        p99: null,
        mean: null,
        max: null,
        durationMs: real.ms,
        throughput: { value: done / (real.ms / 1000), unit: 'versions/s' },
        errors: { non2xx: 0, transport: 0 },
        floors: [floor],
        details: { ...counts(real.summary), cpu: real.cpu, statusesAfter: await statusCounts(p), concurrency },
      });
    } finally {
      await prefix.close();
    }
    return rows;
  },
};
