// Deploying a packed directory through the presigned path: ask for a version (declaring size and
// sha256, so an oversized archive is refused before any upload), PUT the bytes to S3, complete, then
// follow the deployment until it is built or failed and say whether it is the live version.
// Following reads the function's event stream (opened before the upload, so nothing is missed),
// printing the build log as the runner writes it; a server without the stream is polled instead.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApiClient, ConfigPatch, DeployMetadata, DeploymentDetail, FunctionAccess } from './api-client.ts';
import { endpointUrls } from './endpoint.ts';
import { ApiError, CliError } from './errors.ts';
import { formatBytes, formatRetry, plural, shortSha } from './format.ts';
import type { Output } from './output.ts';
import type { Packed } from './pack.ts';
import { UPLOAD_ATTEMPTS, uploadArchive } from './upload.ts';
import { followEvents, StreamUnsupported, type StreamMessage } from './event-stream.ts';

export const PROGRESS_BAR_OVER_BYTES = 1_000_000;
export const BUILD_LOG_TAIL_LINES = 30;

export interface DeployOptions {
  name: string;
  out: Output;
  /** follow the build until it is over (default true) */
  wait?: boolean;
  pollMs?: number;
  /** give up following after this long (the build carries on server-side) */
  timeoutMs?: number;
  /** a change to the configuration the new version inherits (containerpub.json) */
  config?: ConfigPatch;
  /** message, gitSha and author of the last commit, when the directory is a git repository */
  metadata?: DeployMetadata;
  /** false: the version is built but does not go live until approved (deploy --no-activate) */
  activate?: boolean;
  /** called with the version as soon as the API allocated it (watch reports abandoned deploys) */
  onVersion?: (version: number) => void;
}

export interface DeployOutcome {
  name: string;
  functionId: string;
  version: number;
  deploymentId: string;
  /** 'active' (built), 'failed', or the status it had when we stopped following (--no-wait) */
  status: string;
  /** this version is the live one */
  live: boolean;
  /** built without going live (--no-activate, or the function requires approval): "containerpub approve" */
  awaitingApproval: boolean;
  liveVersion: number | null;
  /** the function's endpoint, once the deploy was followed to the end (null with --no-wait or a failed build) */
  url: string | null;
  hostUrl?: string;
  access: FunctionAccess | null;
  isNewFunction: boolean;
  sha256: string;
  sizeBytes: number;
  files: number;
  error: string | null;
  buildLogTail: string[];
}

export function describePacked(packed: Packed): string {
  const skipped = packed.skipped.length ? `; left out ${plural(packed.skipped.length, 'special file')}` : '';
  return `packed ${plural(packed.files, 'file')} (${formatBytes(packed.size)}, sha256 ${shortSha(packed.sha256)})${skipped}`;
}

export async function deployPacked(api: ApiClient, packed: Packed, opts: DeployOptions): Promise<DeployOutcome> {
  const { name, out } = opts;
  let requested;
  try {
    requested = await api.requestDeploy({
      name,
      sizeBytes: packed.size,
      sha256: packed.sha256,
      ...(opts.config ? { config: opts.config } : {}),
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(opts.activate === false ? { activate: false as const } : {}),
    });
  } catch (err) {
    if (err instanceof ApiError && err.status === 413) throw new CliError(`the server refused the archive before upload: ${err.message}`);
    throw err;
  }
  const { id: functionId, version } = requested;
  opts.onVersion?.(version);
  const label = `${name} v${version}`;
  // before the upload: the build can start the moment it is complete
  const watch = opts.wait === false ? null : await watchEvents(api, functionId);
  try {
    return await uploadAndFollow(api, packed, opts, requested, watch);
  } finally {
    watch?.close();
  }
}

async function uploadAndFollow(
  api: ApiClient,
  packed: Packed,
  opts: DeployOptions,
  requested: Awaited<ReturnType<ApiClient['requestDeploy']>>,
  watch: EventWatch | null,
): Promise<DeployOutcome> {
  const { name, out } = opts;
  const { id: functionId, version } = requested;
  const label = `${name} v${version}`;
  out.info(`${label}: ${requested.isNewFunction ? 'new function; ' : ''}uploading ${formatBytes(packed.size)}`);

  const bar = packed.size > PROGRESS_BAR_OVER_BYTES && out.interactive;
  let shownPct = -1;
  await uploadArchive(requested.upload, packed.buffer, {
    onProgress: bar
      ? (sent, total) => {
          const pct = Math.floor((sent / total) * 100);
          if (pct === shownPct) return; // a redraw per percent, not per 64 KiB chunk
          shownPct = pct;
          out.progress(progressBar(sent, total), sent === total);
        }
      : undefined,
    onRetry: (attempt, reason, waitMs) => {
      shownPct = -1;
      out.error(`warning: ${label}: ${reason}; trying again in ${(waitMs / 1000).toFixed(waitMs < 1000 ? 1 : 0)} s (attempt ${attempt + 1} of ${UPLOAD_ATTEMPTS})`);
    },
  });

  let completed;
  try {
    completed = await api.completeDeploy(functionId, version);
  } catch (err) {
    if (err instanceof ApiError) throw new CliError(`${label}: the upload was not accepted: ${err.message}`);
    throw err;
  }
  const base: DeployOutcome = {
    name,
    functionId,
    version,
    deploymentId: requested.deploymentId,
    status: completed.status,
    live: false,
    awaitingApproval: false,
    liveVersion: null,
    url: null,
    access: null,
    isNewFunction: requested.isNewFunction,
    sha256: packed.sha256,
    sizeBytes: packed.size,
    files: packed.files,
    error: null,
    buildLogTail: [],
  };
  out.info(`${label}: uploaded; ${completed.status}`);
  if (opts.wait === false) return base;

  const follow = { ...opts, label, lastStatus: completed.status };
  const built =
    watch && completed.status !== 'active' && completed.status !== 'failed'
      ? await followBuildLive(api, functionId, version, requested.deploymentId, watch, follow)
      : await followBuild(api, functionId, version, follow);
  if (built.status === 'failed') {
    return { ...base, status: 'failed', error: built.error, buildLogTail: tail(built.buildLogs, BUILD_LOG_TAIL_LINES) };
  }
  // One read for both: the live version when this one is not it, and the endpoint to print.
  const fn = await api.getFunction(functionId);
  const liveVersion = built.isActive ? version : fn.activeVersion;
  return {
    ...base,
    status: built.status,
    live: built.isActive,
    awaitingApproval: built.awaitingApproval,
    liveVersion,
    ...endpointUrls(fn),
    access: fn.access,
  };
}

/** The function's event stream, opened and positioned; next() gives its messages in order. */
export interface EventWatch {
  next(): Promise<IteratorResult<StreamMessage>>;
  close(): void;
}

const STREAM_OPEN_TIMEOUT_MS = 10_000;

/** null when the server has no event stream (or it does not open in time): the caller polls. */
export async function watchEvents(api: ApiClient, functionId: string): Promise<EventWatch | null> {
  const abort = new AbortController();
  let opened!: () => void;
  const open = new Promise<'open'>((resolve) => (opened = () => resolve('open')));
  const gen = followEvents(api, functionId, { signal: abort.signal, onOpen: () => opened() });
  let pending: Promise<IteratorResult<StreamMessage>> | null = gen.next();
  pending.catch(() => {}); // read below, or dropped on close
  let timer: NodeJS.Timeout | undefined;
  const close = () => {
    abort.abort();
    void gen.return(undefined).catch(() => {});
  };
  try {
    const first = await Promise.race([
      open,
      pending.then(() => 'message' as const),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), STREAM_OPEN_TIMEOUT_MS))),
    ]);
    if (first === 'timeout') {
      close();
      return null;
    }
  } catch (err) {
    close();
    if (err instanceof StreamUnsupported) return null;
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return {
    next() {
      const p = pending ?? gen.next();
      pending = null;
      return p;
    },
    close,
  };
}

/**
 * Follows a version's build through the event stream: its status changes and its build log as
 * they come, until it is built or failed; then the deployment as the API sees it (the same answer
 * polling gives). A stream that ends without that falls back to polling.
 */
export async function followBuildLive(
  api: ApiClient,
  functionId: string,
  version: number,
  deploymentId: string,
  watch: EventWatch,
  opts: DeployOptions & { label: string; lastStatus: string },
): Promise<DeploymentDetail> {
  const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  let last = opts.lastStatus;
  try {
    for (;;) {
      const r = await Promise.race([watch.next(), deadline]);
      if (r === 'timeout') {
        const dep = await api.getDeployment(functionId, version);
        if (dep.status === 'active' || dep.status === 'failed') return dep;
        throw new CliError(`${opts.label} is still ${dep.status} after ${Math.round(timeoutMs / 1000)} s; see "containerpub history ${opts.name}" later`);
      }
      if (r.done) return followBuild(api, functionId, version, opts);
      const m = r.value;
      if (m.event === 'build_log') {
        const d = m.data as { deploymentId: string; lines: string[] };
        if (d.deploymentId === deploymentId) for (const line of d.lines) opts.out.info(`  │ ${line}`);
        continue;
      }
      if ((m.data as { deploymentId?: string | null }).deploymentId !== deploymentId) continue;
      const message = (m.data as { message?: string }).message ?? '';
      if (m.event === 'build_succeeded' || m.event === 'build_failed') return api.getDeployment(functionId, version);
      if (m.event === 'build_started' && last !== 'building') {
        opts.out.info(`${opts.label}: building`);
        last = 'building';
      } else if (m.event === 'build_retried' || m.event === 'build_waiting') {
        opts.out.info(`${opts.label}: ${message}`);
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Polls a version until it is built (active) or failed; past the timeout, a CliError. */
export async function followBuild(
  api: ApiClient,
  functionId: string,
  version: number,
  opts: DeployOptions & { label: string; lastStatus: string },
): Promise<DeploymentDetail> {
  const pollMs = opts.pollMs ?? 300;
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  let last = opts.lastStatus;
  let lastRetry: string | null = null;
  for (;;) {
    const dep = await api.getDeployment(functionId, version);
    if (dep.status === 'active' || dep.status === 'failed') return dep;
    if (dep.status !== last) {
      opts.out.info(`${opts.label}: ${dep.status}`);
      last = dep.status;
    }
    // once per failed attempt: its backoff says when the next one comes
    if (dep.nextAttemptAt && dep.nextAttemptAt !== lastRetry) {
      opts.out.info(`${opts.label}: ${formatRetry(dep)}`);
      lastRetry = dep.nextAttemptAt;
    }
    if (Date.now() > deadline) {
      throw new CliError(
        `${opts.label} is still ${dep.status} after ${Math.round((opts.timeoutMs ?? 600_000) / 1000)} s; ` +
          `see "containerpub history ${opts.name}" later`,
      );
    }
    await sleep(pollMs);
  }
}

/** The human summary of a finished deploy: one line, plus the build log tail when it failed. */
export function reportOutcome(out: Output, o: DeployOutcome): void {
  const label = `${o.name} v${o.version}`;
  if (o.status === 'failed') {
    out.error(`✘ ${label} failed: ${o.error ?? 'build failed'}`);
    if (o.buildLogTail.length) {
      out.error(`  build log (last ${o.buildLogTail.length} lines):`);
      for (const line of o.buildLogTail) out.error(`  │ ${line}`);
    }
    return;
  }
  if (o.status !== 'active') {
    out.info(`${label} is ${o.status}; follow it with "containerpub history ${o.name}"`);
    return;
  }
  if (o.live) {
    out.info(`✔ ${label} is live`);
    if (o.url) out.info(`  ${o.url}${o.access ? ` (access: ${o.access})` : ''}`);
    if (o.hostUrl) out.info(`  ${o.hostUrl}`);
  } else if (o.awaitingApproval) {
    const live = o.liveVersion === null ? 'no version is live' : `v${o.liveVersion} stays live`;
    out.info(`✔ ${label} built, awaiting approval (${live}): "containerpub approve ${o.name} ${o.version}" makes it live`);
  } else if (o.liveVersion === null) out.info(`✔ ${label} built, but no version is live`);
  else out.info(`✔ ${label} built, but v${o.liveVersion} is live (a newer deploy or rollback)`);
}

/** The last `lines` non-empty lines of a build log. */
export function tail(text: string | null, lines: number): string[] {
  if (!text) return [];
  return text.replace(/\s+$/, '').split('\n').slice(-lines);
}

function progressBar(sent: number, total: number): string {
  const width = 30;
  const filled = Math.round((sent / total) * width);
  const pct = Math.floor((sent / total) * 100);
  return `uploading [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}% ${formatBytes(sent)} / ${formatBytes(total)}`;
}
