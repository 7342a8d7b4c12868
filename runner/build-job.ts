// One build, start to finish: stream the archive from S3 through validation onto disk, detect the
// handler, build with the runtime driver, then mark it built and apply the activation rule. The
// live version is never touched by anything here except that final, fenced transaction.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { ArchiveError, extractArchive, functionRoot } from '../shared/archive/extract.ts';
import { detectFunction } from '../shared/archive/detect.ts';
import {
  failBuild,
  finishBuild,
  recordBuildStarted,
  releaseClaim,
  renewLease,
  type ClaimedBuild,
} from '../shared/domain/build-queue.ts';
import type { Logger } from '../shared/logger.ts';
import type { Platform } from '../shared/platform.ts';
import { poolSettings } from '../shared/domain/invoke.ts';
import { StartError, checkReadiness } from '../shared/runtime/readiness.ts';
import { installDependencies } from '../shared/runtime/dependencies.ts';
import { BuildError, type BuildResult, type RuntimeDriver } from '../shared/runtime/types.ts';
import { ArtifactMissingError } from '../shared/runtime/protocol.ts';
import { num } from '../shared/db/dialect.ts';
import { BUILT_STATUS, type DeploymentRow } from '../shared/domain/model.ts';
import { versionDriver } from '../shared/domain/version-driver.ts';
import { BuildLog } from './build-log.ts';
import { newBuildWorkDir } from '../shared/work-dirs.ts';

export interface BuildContext {
  p: Platform;
  driver: RuntimeDriver;
  runnerId: string;
  logger: Logger;
  /** aborted when the runner shuts down */
  shutdown: AbortSignal;
}

class LeaseLost extends Error {}

export async function runBuild(ctx: BuildContext, build: ClaimedBuild): Promise<void> {
  const { p, driver, runnerId } = ctx;
  const cfg = p.config.runner;
  const log = ctx.logger.child({ functionId: build.functionId, deploymentId: build.id, version: build.version });
  const buildLog = new BuildLog(cfg.buildLogMaxBytes);
  const abort = new AbortController();
  const onShutdown = () => abort.abort(new Error('runner shutting down'));
  ctx.shutdown.addEventListener('abort', onShutdown, { once: true });

  // Renew the lease while working; losing it means another runner owns this build now.
  const renewEvery = Math.max(200, Math.floor(cfg.leaseMs / 3));
  const renewal = setInterval(() => {
    renewLease(p.db, { deploymentId: build.id, runnerId, leaseMs: cfg.leaseMs, buildLogs: buildLog.text() })
      .then((held) => {
        if (!held) abort.abort(new LeaseLost('lease lost: another runner took this build over'));
      })
      .catch((err) => log.warn('lease renewal failed', { err }));
  }, renewEvery);

  const workDir = newBuildWorkDir(p.config.dataDir, build.id);
  const started = Date.now();
  try {
    await recordBuildStarted(p.db, build, runnerId);
    buildLog.line(`[containerpub] build of version ${build.version} (attempt ${build.attempts}) on ${runnerId}`);
    log.info('build started', { attempt: build.attempts });

    const result = (build.reuseFrom ? await reuseCode(ctx, build, buildLog) : null) ?? (await buildFromArchive(ctx, build, workDir, buildLog, abort.signal));
    if (abort.signal.aborted) throw abort.signal.reason;
    await checkStarts(ctx, build, result.imageTag, buildLog);
    if (abort.signal.aborted) throw abort.signal.reason;
    buildLog.line(`[containerpub] built in ${((Date.now() - started) / 1000).toFixed(1)} s${result.imageTag ? `: ${result.imageTag}` : ''}`);

    const outcome = await finishBuild(p.db, {
      deploymentId: build.id,
      functionId: build.functionId,
      runnerId,
      imageTag: result.imageTag,
      driver: driver.name,
      buildLogs: buildLog.text(),
    });
    if (outcome.fenced) {
      log.warn('build finished but the claim was lost; nothing recorded');
    } else {
      log.info(outcome.activated ? 'build succeeded and is live' : 'build succeeded; a newer intent stays live', {
        ms: Date.now() - started,
      });
    }
  } catch (err) {
    const reason = abort.signal.aborted ? abort.signal.reason : err;
    if (reason instanceof LeaseLost) {
      log.warn('build abandoned: lease lost');
      return;
    }
    if (ctx.shutdown.aborted) {
      await releaseClaim(p.db, { deploymentId: build.id, runnerId }).catch(() => {});
      log.info('build handed back on shutdown');
      return;
    }
    // A bad archive or a failing build is final; anything else (S3 or the engine unreachable) is
    // an infrastructure fault worth another attempt.
    const final = err instanceof ArchiveError || err instanceof BuildError;
    const message = (err as Error).message || String(err);
    buildLog.line(`[containerpub] ${final ? 'build failed' : 'attempt failed'}: ${message}`);
    const failed = await failBuild(p.db, {
      deploymentId: build.id,
      functionId: build.functionId,
      runnerId,
      error: message,
      buildLogs: buildLog.text(),
      retry: !final,
      maxAttempts: cfg.maxAttempts,
    });
    log.warn(failed.willRetry ? 'build attempt failed; will retry' : 'build failed', { err: message });
  } finally {
    clearInterval(renewal);
    ctx.shutdown.removeEventListener('abort', onShutdown);
    await fs.promises.rm(workDir, { recursive: true, force: true }).catch(() => {});
  }
}

/** Ready before live: one instance of the new version must start and answer its readiness check. */

/** Unpacks the version's archive (validated while it streams) and builds it with the driver. */
async function buildFromArchive(ctx: BuildContext, build: ClaimedBuild, workDir: string, buildLog: BuildLog, signal: AbortSignal): Promise<BuildResult> {
  const { p, driver } = ctx;
  await fs.promises.mkdir(workDir, { recursive: true });
  buildLog.line(`[containerpub] validating and unpacking ${build.s3Key}`);
  const download = await p.storage.getStream(build.s3Key);
  // The presigned URL stays valid after complete: check the bytes are still the verified ones.
  const hash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  download.on('error', (err) => hashing.destroy(err));
  let unpacked: { entries: number; bytes: number };
  try {
    // extractArchive consumes its source to the end, so the hash covers every byte
    unpacked = await extractArchive(download.pipe(hashing), workDir);
  } finally {
    download.destroy();
  }
  const actual = hash.digest('hex');
  if (build.archiveSha256 && actual !== build.archiveSha256) {
    throw new ArchiveError(`archive changed after its upload was completed (sha256 ${actual}, expected ${build.archiveSha256})`);
  }
  buildLog.line(`[containerpub] archive ok: ${unpacked.entries} entries, ${unpacked.bytes} bytes unpacked`);
  if (signal.aborted) throw signal.reason;

  const root = await functionRoot(workDir);
  const kind = await detectFunction(root);
  buildLog.line(
    kind.kind === 'node'
      ? `[containerpub] Node.js function, handler ${kind.entry}`
      : '[containerpub] custom image from the archive\'s Dockerfile',
  );

  // npm ci of package.json's dependencies when the archive does not ship node_modules (null: nothing to install)
  const dependencies =
    kind.kind === 'node'
      ? await installDependencies({
          root,
          cacheDir: path.join(p.config.dataDir, 'build-cache'),
          npmRegistry: p.config.runner.npmRegistry,
          signal,
          log: (line) => buildLog.line(line),
        })
      : null;
  if (signal.aborted) throw signal.reason;

  const result = await driver.build({
    functionId: build.functionId,
    deploymentId: build.id,
    version: build.version,
    sourceDir: root,
    function: kind,
    log: (line) => buildLog.line(line),
    signal: signal,
    dependencies,
  });
  if (signal.aborted) throw signal.reason;
  return result;
}

/**
 * A configuration change: the new version runs the code of an earlier one. Its archive is copied
 * (each version owns its archive) and the driver makes the earlier artifact its own (a new image
 * tag, or a copy of the unpacked directory): nothing is built. Null when that code's artifact is
 * gone or was built by another driver: the caller then builds from the copied archive.
 */
async function reuseCode(ctx: BuildContext, build: ClaimedBuild, buildLog: BuildLog): Promise<BuildResult | null> {
  const { p, driver } = ctx;
  const base = (await p.db.knex('function_deployments').where({ id: build.reuseFrom! }).first()) as DeploymentRow | undefined;
  if (!base) throw new BuildError('the version whose code this configuration change reuses was deleted');
  const baseVersion = num(base.version);
  buildLog.line(`[containerpub] configuration change: reusing the code of version ${baseVersion}, no build`);
  await p.storage.copy(base.archive_key ?? base.s3_key, build.s3Key);
  if (versionDriver(base) !== driver.name || base.status !== BUILT_STATUS) {
    buildLog.line(`[containerpub] version ${baseVersion} is not runnable here (${base.status}, ${versionDriver(base)} driver): building its archive`);
    return null;
  }
  try {
    return await driver.cloneArtifact({ functionId: build.functionId, version: baseVersion, imageTag: base.image_tag }, { functionId: build.functionId, version: build.version }, (line) => buildLog.line(line));
  } catch (err) {
    if (!(err instanceof ArtifactMissingError)) throw err;
    buildLog.line(`[containerpub] version ${baseVersion}'s artifact is gone (${err.message}): building its archive`);
    return null;
  }
}

async function checkStarts(ctx: BuildContext, build: ClaimedBuild, imageTag: string | null, buildLog: BuildLog): Promise<void> {
  const settings = poolSettings(ctx.p, { functionId: build.functionId, config: build.config });
  buildLog.line(`[containerpub] readiness check: starting one instance (up to ${settings.startTimeoutMs} ms)`);
  try {
    const { readyMs } = await checkReadiness(
      ctx.driver,
      {
        functionId: build.functionId,
        deploymentId: build.id,
        version: build.version,
        imageTag,
        instanceId: `r-${randomBytes(6).toString('hex')}`,
        memoryMb: settings.memoryMb,
        env: settings.env,
        network: settings.network,
      },
      settings.startTimeoutMs,
    );
    buildLog.line(`[containerpub] readiness check passed: ready in ${readyMs} ms`);
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    const output = err.logs.trim();
    if (output) for (const line of output.split('\n')) buildLog.line(line);
    throw new BuildError(`version ${build.version} did not start: ${err.message}`);
  }
}
