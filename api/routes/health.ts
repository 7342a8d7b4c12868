// GET /healthz: the process answers. GET /readyz: every dependency answers too (the database, S3,
// the Docker engine when this process runs the docker driver, the registry when REGISTRY is set),
// each reported with its latency; 503 when one does not.
import type Docker from 'dockerode';
import { newDockerClient } from '../../shared/runtime/docker-client.ts';
import type { Platform } from '../../shared/platform.ts';
import type { RuntimeDriver } from '../../shared/runtime/types.ts';
import { RegistryClient } from '../../shared/runtime/registry.ts';
import { errorBody, type App } from '../http/app.ts';

const CHECK_TIMEOUT_MS = 2000;

async function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface DependencyCheck {
  ok: boolean;
  latencyMs: number;
  /** why it is not ok */
  error?: string;
}

/** Runs one check, timed, bounded by CHECK_TIMEOUT_MS; never throws. */
export async function timedCheck(work: () => Promise<unknown>): Promise<DependencyCheck> {
  const started = performance.now();
  try {
    const result = await within(CHECK_TIMEOUT_MS, work());
    const latencyMs = Math.round((performance.now() - started) * 10) / 10;
    if (result === false) return { ok: false, latencyMs, error: 'not answering as expected' };
    return { ok: true, latencyMs };
  } catch (err) {
    return { ok: false, latencyMs: Math.round((performance.now() - started) * 10) / 10, error: (err as Error)?.message ?? String(err) };
  }
}

export const checkDatabase = (p: Platform) => timedCheck(() => p.db.knex.raw('select 1'));
export const checkStorage = (p: Platform) => timedCheck(() => p.storage.ping());

export function register(app: App, p: Platform, opts: { driver?: RuntimeDriver } = {}): void {
  const engine = opts.driver?.name === 'docker' ? ((opts.driver as { docker?: Docker }).docker ?? newDockerClient()) : null;
  // REGISTRY may carry a path (host:port/namespace): the registry's API is at the host
  const registryUrl = p.config.runtime.registryApiUrl ?? p.config.runtime.registry?.split('/')[0];
  const registry = registryUrl ? new RegistryClient(registryUrl, { timeoutMs: CHECK_TIMEOUT_MS }) : null;

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', async (c) => {
    const named: [string, Promise<DependencyCheck>][] = [
      ['database', checkDatabase(p)],
      ['storage', checkStorage(p)],
    ];
    if (engine) named.push(['engine', timedCheck(() => engine.ping())]);
    if (registry) named.push(['registry', timedCheck(() => registry.ping())]);
    const checks: Record<string, DependencyCheck> = {};
    for (const [name, check] of named) checks[name] = await check;
    // `database` and `storage` as before: "ok" or "error: why"
    const word = (ch: DependencyCheck) => (ch.ok ? 'ok' : `error: ${ch.error}`);
    const summary = { database: word(checks.database!), storage: word(checks.storage!), checks };
    if (Object.values(checks).every((ch) => ch.ok)) return c.json({ status: 'ready', ...summary });
    const down = Object.entries(checks).filter(([, ch]) => !ch.ok).map(([name]) => name);
    return c.json({ ...errorBody('unavailable', `a dependency is not answering: ${down.join(', ')}`), ...summary }, 503);
  });
}
