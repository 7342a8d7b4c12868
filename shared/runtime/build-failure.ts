// What a failed build attempt means for the queue, decided in one place (shared/domain/build-queue.ts
// acts on it). Three kinds, because they call for three different waits:
// - final: the function's own, deterministic failure (a bad archive, a failing Dockerfile step,
//   npm's own error, over BUILD_TIMEOUT_MS). Trying again would fail the same way.
// - outage: a service the build needs is down (S3, the registry, the Docker engine, the npm
//   registry). Not the function's fault: it waits with backoff and spends no attempt, so a short
//   outage cannot use up every attempt of every queued build (it once failed five builds for good
//   in 1.3 s). Bounded by BUILD_TIMEOUT_MS from the build's first attempt.
// - unknown: anything else (a bug, a full disk, a runner that died). Spends an attempt, then backs off.
import { ArchiveError } from '../archive/extract.ts';
import { isDependencyOutage } from '../outage.ts';
import { BuildError, InfrastructureError } from './types.ts';

export type BuildFailure =
  | { kind: 'final'; message: string }
  | { kind: 'outage'; service: OutageService; message: string }
  | { kind: 'unknown'; message: string };

export type OutageService = InfrastructureError['service'] | 'database' | 'network';

const SERVICE_NAMES: Record<OutageService, string> = {
  s3: 'S3',
  registry: 'the registry',
  engine: 'the Docker engine',
  npm: 'the npm registry',
  database: 'the database',
  network: 'a service the build needs',
};

export function describeService(service: OutageService): string {
  return SERVICE_NAMES[service];
}

/** The whole build (download to readiness start) ran over BUILD_TIMEOUT_MS: the function's own, final. */
export class BuildTimedOutError extends BuildError {
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${formatSeconds(timeoutMs)} s (BUILD_TIMEOUT_MS)`);
    this.name = 'BuildTimedOutError';
  }
}

/** 0.962, 4.37, 12.3, 600: three significant digits, whole seconds from 100 s on. */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return String(s >= 100 ? Math.round(s) : Number(s.toPrecision(3)));
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err)) || String(err);

type ErrorLike = Record<string, unknown> & { name?: unknown; code?: unknown; syscall?: unknown; address?: unknown };

/** The outage `err` (or what it wraps) is, or null when it is none. */
function outageService(err: unknown, depth = 0): OutageService | null {
  if (!err || typeof err !== 'object' || depth > 5) return null;
  if (err instanceof InfrastructureError) return err.service;
  const e = err as ErrorLike;
  // RegistryError (shared/runtime/registry.ts): no answer at all, or the registry's own failure
  if (e.name === 'RegistryError' && 'status' in e) {
    const status = e.status as number | null;
    if (status === null || status >= 500) return 'registry';
  }
  // an AWS SDK error: S3 answered 5xx (its fault), or never answered
  const meta = e.$metadata as { httpStatusCode?: number } | undefined;
  if (meta && typeof meta === 'object') {
    if (meta.httpStatusCode === undefined || meta.httpStatusCode >= 500) return 's3';
    return null; // answered 4xx: a real answer about this request
  }
  // the engine's socket is missing or refuses (dockerode over /var/run/docker.sock)
  if (e.syscall === 'connect' && typeof e.address === 'string' && e.address.endsWith('.sock')) {
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'EACCES') return 'engine';
  }
  const cause = outageService(e.cause, depth + 1);
  if (cause) return cause;
  // connection-level failures of anything (ECONNREFUSED, ECONNRESET, ETIMEDOUT, EAI_AGAIN, …)
  if (isDependencyOutage(err)) return /knex|sqlite|postgres|database/i.test(`${e.name} ${messageOf(err)}`) ? 'database' : 'network';
  return null;
}

export function classifyBuildFailure(err: unknown): BuildFailure {
  const message = messageOf(err);
  if (err instanceof ArchiveError || err instanceof BuildError) return { kind: 'final', message };
  const service = outageService(err);
  if (service) return { kind: 'outage', service, message };
  return { kind: 'unknown', message };
}
