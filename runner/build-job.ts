// One build, start to finish: stream the archive from S3 through validation onto disk, detect the
// handler, build with the runtime driver, then mark it built and apply the activation rule. The
// live version is never touched by anything here except that final, fenced transaction.
import { createHash } from 'node:crypto';
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
  saveBuildLog,
  type ClaimedBuild,
} from '../shared/domain/build-queue.ts';
import type { Logger } from '../shared/logger.ts';
import type { Platform } from '../shared/platform.ts';
import { poolSettings } from '../shared/domain/invoke.ts';
import { StartError, checkReadiness } from '../shared/runtime/readiness.ts';
import { newInstanceId } from '../shared/runtime/instance.ts';
import { installDependencies } from '../shared/runtime/dependencies.ts';
import { BuildError, type BuildResult, type RuntimeDriver } from '../shared/runtime/types.ts';
import { BuildTimedOutError, classifyBuildFailure } from '../shared/runtime/build-failure.ts';
import { ArtifactMissingError } from '../shared/runtime/protocol.ts';
import { num } from '../shared/db/dialect.ts';
import { BUILT_STATUS, type DeploymentRow } from '../shared/domain/model.ts';
import { versionDriver } from '../shared/domain/version-driver.ts';
import { BuildLog } from './build-log.ts';
import { newBuildWorkDir } from '../shared/work-dirs.ts';
import { outsideRequest, withRequestId } from '../shared/observability/request-context.ts';
import type { BuildOutcome } from '../shared/observability/metrics.ts';

export interface BuildContext {
  p: Platform;
  driver: RuntimeDriver;
  runnerId: string;
  logger: Logger;
  /** aborted when the runner shuts down */
  shutdown: AbortSignal;
}

class LeaseLost extends Error {}

/** After an abort, how long the work may take to stop (kill its build, close its streams) before the runner moves on anyway. */
const ABORT_GRACE_MS = 5_000;

/**
 * Runs one attempt of a claimed build; never rejects. Every line it logs, its crash included (an
 * error its own failure handling could not record, such as the database going away), carries the
 * id of the request that created the version, and no other: the runner may have been woken while
 * serving some other request.
 */
export function runBuild(ctx: BuildContext, build: ClaimedBuild): Promise<void> {
  const attempt = () => runBuildAttempt(ctx, build).catch((err) => ctx.logger.error('build crashed', { deploymentId: build.id, err }));
  return build.requestId ? withRequestId(build.requestId, attempt) : outsideRequest(attempt);
}

async function runBuildAttempt(ctx: BuildContext, build: ClaimedBuild): Promise<void> {
  const { p, driver, runnerId } = ctx;
  const cfg = p.config.runner;
  const log = ctx.logger.child({ functionId: build.functionId, deploymentId: build.id, version: build.version });
  const buildLog = new BuildLog(cfg.buildLogMaxBytes);
  const claim = { deploymentId: build.id, claimToken: build.claimToken };
  // One signal for everything the build does, passed all the way down: aborted when the runner
  // shuts down, when the claim is lost to another runner, or after BUILD_TIMEOUT_MS over the whole
  // build (download, validation, build and push, the readiness start); its reason says which.
  const abort = new AbortController();
  const { signal } = abort;
  const onShutdown = () => abort.abort(new Error('runner shutting down'));
  if (ctx.shutdown.aborted) onShutdown();
  else ctx.shutdown.addEventListener('abort', onShutdown, { once: true });
  const timeoutMs = cfg.buildTimeoutMs;
  const deadline = performance.now() + timeoutMs;
  const timer = setTimeout(() => abort.abort(new BuildTimedOutError(timeoutMs)), timeoutMs);

  // Renew the lease while working; losing it means another claim owns this build now. Not past the
  // build's time: a build that will not stop must not keep its claim forever.
  const renewEvery = Math.max(200, Math.floor(cfg.leaseMs / 3));
  const renewal = setInterval(() => {
    if (performance.now() > deadline + ABORT_GRACE_MS) return clearInterval(renewal);
    renewLease(p.db, { ...claim, leaseMs: cfg.leaseMs, buildLogs: buildLog.text() })
      .then((held) => {
        if (!held) abort.abort(new LeaseLost('lease lost: another runner took this build over'));
      })
      .catch((err) => log.warn('lease renewal failed', { err }));
  }, renewEvery);
  // New log lines reach watchers within BUILD_LOG_FLUSH_MS, not only at each renewal: one small
  // UPDATE when the log changed, never two at once.
  let savedRevision = 0;
  let saving = false;
  const logFlush = setInterval(() => {
    const revision = buildLog.revision;
    if (saving || revision === savedRevision) return;
    saving = true;
    saveBuildLog(p.db, { ...claim, buildLogs: buildLog.text() })
      .then(() => (savedRevision = revision))
      .catch((err) => log.warn('could not write the build log so far', { err }))
      .finally(() => (saving = false));
  }, cfg.buildLogFlushMs);

  const workDir = newBuildWorkDir(p.config.dataDir, build.id);
  const started = Date.now();
  let outcomeLabel: BuildOutcome = 'failed';
  try {
    await recordBuildStarted(p.db, build, runnerId);
    buildLog.line(`[containerpub] build of version ${build.version} (attempt ${build.attempts}) on ${runnerId}, claim ${build.claimToken.slice(0, 8)}`);
    log.info('build started', { attempt: build.attempts });

    const result = await untilDoneOrAborted(
      (async () => {
        const built = (build.reuseFrom ? await reuseCode(ctx, build, buildLog, signal) : null) ?? (await buildFromArchive(ctx, build, workDir, buildLog, signal));
        if (signal.aborted) throw signal.reason;
        await checkStarts(ctx, build, built.imageTag, buildLog, { signal, deadline, timeoutMs });
        return built;
      })(),
      signal,
    );
    if (signal.aborted) throw signal.reason;
    buildLog.line(`[containerpub] built in ${((Date.now() - started) / 1000).toFixed(1)} s${result.imageTag ? `: ${result.imageTag}` : ''}`);

    const outcome = await finishBuild(p.db, {
      ...claim,
      functionId: build.functionId,
      imageTag: result.imageTag,
      driver: driver.name,
      buildLogs: buildLog.text(),
    });
    outcomeLabel = outcome.fenced ? 'lost' : 'succeeded';
    if (outcome.fenced) {
      log.warn('build finished but the claim was lost; nothing recorded');
    } else {
      log.info(outcome.activated ? 'build succeeded and is live' : 'build succeeded; a newer intent stays live', {
        ms: Date.now() - started,
      });
    }
  } catch (err) {
    const reason = signal.aborted ? signal.reason : err;
    if (reason instanceof LeaseLost) {
      outcomeLabel = 'lost';
      log.warn('build abandoned: lease lost');
      return;
    }
    if (ctx.shutdown.aborted) {
      await releaseClaim(p.db, claim).catch(() => {});
      outcomeLabel = 'handed_back';
      log.info('build handed back on shutdown');
      return;
    }
    const failure = classifyBuildFailure(reason);
    const label = failure.kind === 'final' ? 'build failed' : failure.kind === 'outage' ? 'attempt failed (outage)' : 'attempt failed';
    buildLog.line(`[containerpub] ${label}: ${failure.message}`);
    const failed = await failBuild(p.db, {
      ...claim,
      functionId: build.functionId,
      failure,
      buildLogs: buildLog.text(),
      policy: cfg,
    });
    outcomeLabel = failed.fenced ? 'lost' : failed.willRetry ? 'retrying' : 'failed';
    if (failed.fenced) log.warn('build failed but the claim was lost; nothing recorded', { err: failure.message });
    else if (failed.willRetry) log.warn('build attempt failed; will retry', { err: failure.message, kind: failure.kind, retryInMs: failed.retryInMs });
    else log.warn('build failed', { err: failed.error });
  } finally {
    p.metrics.observeBuild(outcomeLabel, (Date.now() - started) / 1000);
    clearTimeout(timer);
    clearInterval(renewal);
    clearInterval(logFlush);
    ctx.shutdown.removeEventListener('abort', onShutdown);
    await fs.promises.rm(workDir, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * `work`'s outcome, or, once `signal` aborts, its reason: the work gets ABORT_GRACE_MS to stop on
 * its own (so its cleanup runs first), and a step that ignores the signal cannot hold the runner's
 * slot beyond that.
 */
function untilDoneOrAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    work.then(resolve, reject);
    const onAbort = () => {
      const grace = setTimeout(() => reject(signal.reason), ABORT_GRACE_MS);
      work.finally(() => clearTimeout(grace)).catch(() => {});
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.finally(() => signal.removeEventListener('abort', onAbort)).catch(() => {});
  });
}

/** Ready before live: one instance of the new version must start and answer its readiness check. */

/** Unpacks the version's archive (validated while it streams) and builds it with the driver. */
async function buildFromArchive(ctx: BuildContext, build: ClaimedBuild, workDir: string, buildLog: BuildLog, signal: AbortSignal): Promise<BuildResult> {
  const { p, driver } = ctx;
  await fs.promises.mkdir(workDir, { recursive: true });
  buildLog.line(`[containerpub] validating and unpacking ${build.s3Key}`);
  const download = await p.storage.getStream(build.s3Key, { signal });
  // The presigned URL stays valid after complete: check the bytes are still the verified ones.
  const hash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  // a download cut short (S3 gone mid-way) also reads as a truncated archive to the extraction:
  // the download's own error is the cause, and it is what counts (an outage, not a bad archive)
  let downloadError: unknown = null;
  download.on('error', (err) => {
    downloadError ??= err;
    hashing.destroy(err);
  });
  let unpacked: { entries: number; bytes: number };
  try {
    // extractArchive consumes its source to the end, so the hash covers every byte
    unpacked = await extractArchive(download.pipe(hashing), workDir);
  } catch (err) {
    throw downloadError ?? err;
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
async function reuseCode(ctx: BuildContext, build: ClaimedBuild, buildLog: BuildLog, signal: AbortSignal): Promise<BuildResult | null> {
  const { p, driver } = ctx;
  const base = (await p.db.knex('function_deployments').where({ id: build.reuseFrom! }).first()) as DeploymentRow | undefined;
  if (!base) throw new BuildError('the version whose code this configuration change reuses was deleted');
  const baseVersion = num(base.version);
  buildLog.line(`[containerpub] configuration change: reusing the code of version ${baseVersion}, no build`);
  await p.storage.copy(base.archive_key ?? base.s3_key, build.s3Key, { signal });
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

async function checkStarts(
  ctx: BuildContext,
  build: ClaimedBuild,
  imageTag: string | null,
  buildLog: BuildLog,
  time: { signal: AbortSignal; deadline: number; timeoutMs: number },
): Promise<void> {
  const settings = poolSettings(ctx.p, { functionId: build.functionId, config: build.config });
  // the readiness start is part of the build's time: it gets what is left of it, at most
  const leftMs = Math.floor(time.deadline - performance.now());
  if (leftMs <= 0) throw new BuildTimedOutError(time.timeoutMs);
  const limitMs = Math.min(settings.startTimeoutMs, leftMs);
  buildLog.line(`[containerpub] readiness check: starting one instance (up to ${limitMs} ms)`);
  try {
    const instanceId = newInstanceId();
    const { readyMs, kept } = await checkReadiness(
      ctx.driver,
      {
        functionId: build.functionId,
        deploymentId: build.id,
        version: build.version,
        imageTag,
        instanceId,
        memoryMb: settings.memoryMb,
        env: settings.env,
        network: settings.network,
      },
      limitMs,
      time.signal,
    );
    buildLog.line(`[containerpub] readiness check passed: ready in ${readyMs} ms${kept ? `; instance ${instanceId} stays, warm for the version once it is live` : ''}`);
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    const output = err.logs.trim();
    if (output) for (const line of output.split('\n')) buildLog.line(line);
    // cut short by the build's time rather than by its own start timeout: the build timed out
    if (limitMs < settings.startTimeoutMs && performance.now() >= time.deadline - 50) throw new BuildTimedOutError(time.timeoutMs);
    throw new BuildError(`version ${build.version} did not start: ${err.message}`);
  }
}
