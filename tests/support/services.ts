// What the tests need from the machine. Under CI=true a missing service fails the run; elsewhere the
// suites that need it are skipped with a message saying so (never silently).
import { randomBytes } from 'node:crypto';
import knexFactory from 'knex';

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

export type TestDbKind = 'sqlite' | 'postgres';

export function testDbKind(): TestDbKind {
  const kind = (process.env.TEST_DB ?? 'sqlite').toLowerCase();
  if (kind === 'sqlite' || kind === 'postgres') return kind;
  throw new Error(`TEST_DB must be sqlite or postgres, not ${kind}`);
}

export const TEST_PG_URL =
  process.env.TEST_DATABASE_URL ?? 'postgres://containerpub:containerpub@127.0.0.1:5432/containerpub';

/** Throws (and so fails the suite) under CI; otherwise logs a skip line and returns false. */
export function requireService(name: string, available: boolean, why: string): boolean {
  if (available) return true;
  if (inCI) throw new Error(`${name} is required under CI=true but is not available: ${why}`);
  process.stderr.write(`SKIP: ${name} is not available (${why}); run scripts/setup-services.sh to enable these tests\n`);
  return false;
}

/** null when PostgreSQL answers at `url`, else why not (also used by the bench). */
export async function postgresAvailable(url = TEST_PG_URL): Promise<string | null> {
  const knex = knexFactory({
    client: 'pg',
    connection: { connectionString: url, connectionTimeoutMillis: 2000 } as never,
    pool: { min: 0, max: 1 },
    log: { warn() {}, error() {}, debug() {}, deprecate() {} },
  });
  try {
    await knex.raw('select 1');
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await knex.destroy();
  }
}

/** A brand-new PostgreSQL database (one per test file or bench server); dropped by the returned function. */
export async function createPgDatabase(
  baseUrl = TEST_PG_URL,
  prefix = 'cp_test',
): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = knexFactory({ client: 'pg', connection: baseUrl, pool: { min: 0, max: 1 } });
  await admin.raw(`CREATE DATABASE ${name}`);
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      // FORCE cannot end a backend of another role (PostgreSQL's own autovacuum worker can be one:
      // 42501), and a backend may linger a moment (55006): retry, bounded. A test database left
      // behind is harmless (random name); failing the test file over its cleanup is not.
      try {
        for (let attempt = 1; ; attempt++) {
          try {
            await admin.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
            return;
          } catch (err) {
            const code = (err as { code?: string }).code;
            if ((code !== '42501' && code !== '55006') || attempt >= 20) {
              process.stderr.write(`[test] could not drop ${name}: ${(err as Error).message}\n`);
              return;
            }
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      } finally {
        await admin.destroy();
      }
    },
  };
}

export async function dockerAvailable(): Promise<string | null> {
  const { default: Docker } = await import('dockerode');
  try {
    await new Docker().ping();
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The registry and base image the docker suites build with (scripts/setup-services.sh runs both). */
export const TEST_REGISTRY = process.env.TEST_REGISTRY ?? '127.0.0.1:5000';
export const TEST_BASE_IMAGE = process.env.FUNCTION_BASE_IMAGE ?? 'containerpub/node-base:20';

/**
 * For the suites that build images: the Docker engine answers, the registry answers and the base
 * image is on the engine. False (after saying why) when one is missing outside CI: the file skips;
 * under CI=true a missing one is a failure (requireService).
 */
export async function dockerBuildServices(): Promise<boolean> {
  const why = await dockerAvailable();
  if (!requireService('Docker engine', why === null, why ?? '')) return false;
  const { RegistryClient } = await import('../../shared/runtime/registry.ts');
  if (!requireService(`registry at ${TEST_REGISTRY}`, await new RegistryClient(TEST_REGISTRY).ping(), 'no answer')) return false;
  const { default: Docker } = await import('dockerode');
  const hasBase = await new Docker().getImage(TEST_BASE_IMAGE).inspect().then(() => true, () => false);
  return requireService(`base image ${TEST_BASE_IMAGE}`, hasBase, 'run scripts/setup-services.sh');
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as T;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}
