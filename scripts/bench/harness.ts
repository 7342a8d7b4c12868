// Starts the system under test (scripts/bench/server.ts) in a child process on a fresh database (a
// SQLite file in a temporary DATA_DIR, or a brand-new PostgreSQL database), and opens a second
// handle onto the same database and S3 in this process, for seeding and for the domain-level
// measurements (cleanup) and the floors that talk to the database directly.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../shared/config.ts';
import { openPlatform, type Platform } from '../../shared/platform.ts';
import { createLogger } from '../../shared/logger.ts';
import { createPgDatabase as createPgDatabaseAt, postgresAvailable } from '../../tests/support/services.ts';
import { nodeArgsFor } from '../../tests/support/bundle.ts';

export type DbKind = 'sqlite' | 'postgres';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');

/** The role must be allowed to CREATE DATABASE: every server gets a database of its own. */
export const BENCH_PG_URL =
  process.env.BENCH_DATABASE_URL ??
  process.env.TEST_DATABASE_URL ??
  'postgres://containerpub:containerpub@127.0.0.1:5432/containerpub';

export { inCI } from '../../tests/support/services.ts';

/** null when PostgreSQL answers at BENCH_PG_URL, else why not. */
export const postgresUnavailable = () => postgresAvailable(BENCH_PG_URL);
const createPgDatabase = () => createPgDatabaseAt(BENCH_PG_URL, 'cp_bench');

export interface ServerOptions {
  db: DbKind;
  /** run the build runner inside the server process (as `npm start` does) */
  runner: boolean;
  /** platform settings for the server (RUNTIME_DRIVER, RUNNER_NOTIFY, …) */
  env?: Record<string, string>;
  /** settings for this process's handle (KEEP_LAST_N, ARCHIVE_MODE, …) */
  localEnv?: Record<string, string>;
}

export interface BenchUser {
  userId: string;
  token: string;
  /** authorization (and JSON content type) headers */
  headers: Record<string, string>;
}

export interface BenchServer {
  db: DbKind;
  url: string;
  s3Endpoint: string;
  dataDir: string;
  /** the server process (its CPU use is measured) */
  pid: number;
  /** this process's handle onto the same database and S3 */
  platform: Platform;
  newUser(): Promise<BenchUser>;
  /** what the server printed on stderr (its warnings and errors) */
  output(): string;
  close(): Promise<void>;
}

let users = 0;

/** The settings the server starts from: the platform's defaults, whatever this shell exports. */
function serverEnv(dataDir: string, databaseUrl: string, opts: ServerOptions): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    S3_ENDPOINT: '',
    S3_PUBLIC_ENDPOINT: '',
    S3_ACCESS_KEY_ID: '',
    S3_SECRET_ACCESS_KEY: '',
    REGISTRY: '',
    REGISTRY_API_URL: '',
    RUNNER_ID: '',
    RUNTIME_DRIVER: 'process',
    RUNNER_POLL_MS: '1000',
    RUNNER_NOTIFY: 'on',
    RUNNER_CONCURRENCY: '2',
    CLEANUP_CRON: 'off',
    LOG_LEVEL: 'warn',
    BENCH_RUNNER: opts.runner ? 'on' : 'off',
    // The bench registers its users from one address: it measures the platform, not the sign-up limit.
    AUTH_RATE_LIMIT_PER_MINUTE: '0',
    // The deploy scenario queues thousands of builds that no runner takes: the quota is still
    // checked on every request, at a limit the bench does not reach.
    MAX_BUILDS_PER_USER: '1000000',
    ...opts.env,
  };
}

function waitForReady(child: ChildProcess, output: () => string, timeoutMs: number): Promise<{ url: string; s3Endpoint: string }> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => fail(new Error(`the bench server did not start within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      reject(new Error(`${err.message}\n--- server output ---\n${output()}`));
    };
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString();
      const line = buffer.split('\n').find((l) => l.trim().startsWith('{'));
      if (!line) return;
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      resolve(JSON.parse(line));
    };
    const onExit = (code: number | null) => fail(new Error(`the bench server exited (code ${code}) before it was ready`));
    child.stdout!.on('data', onData);
    child.once('exit', onExit);
  });
}

export async function startServer(opts: ServerOptions): Promise<BenchServer> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bench-'));
  let databaseUrl: string;
  let dropDb: (() => Promise<void>) | undefined;
  if (opts.db === 'postgres') {
    const created = await createPgDatabase();
    databaseUrl = created.url;
    dropDb = created.drop;
  } else {
    databaseUrl = `sqlite:${path.join(dataDir, 'containerpub.sqlite')}`;
  }
  // BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": profile the server under load
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, ...nodeArgsFor('scripts/bench/server.ts')], {
    cwd: repoRoot,
    env: serverEnv(dataDir, databaseUrl, opts),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const cleanupFiles = async () => {
    await dropDb?.().catch(() => {});
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  let ready: { url: string; s3Endpoint: string };
  try {
    ready = await waitForReady(child, () => stderr, 60_000);
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    await cleanupFiles();
    throw err;
  }
  const config = loadConfig({
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    S3_ENDPOINT: ready.s3Endpoint,
    S3_ACCESS_KEY_ID: 'S3RVER',
    S3_SECRET_ACCESS_KEY: 'S3RVER',
    LOG_LEVEL: 'warn',
    CLEANUP_CRON: 'off',
    ...opts.localEnv,
  });
  const platform = await openPlatform(config, { logger: createLogger(config.logLevel), secretsKey: 'generate' });
  return {
    db: opts.db,
    url: ready.url,
    s3Endpoint: ready.s3Endpoint,
    dataDir,
    pid: child.pid!,
    platform,
    output: () => stderr,
    async newUser() {
      const email = `bench${++users}-${process.pid}-${Date.now()}@example.com`;
      const res = await fetch(`${ready.url}/api/auth/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password: 'correct horse battery staple' }),
      });
      const body = (await res.json()) as { userId: string; token: string };
      if (res.status !== 201) throw new Error(`register answered ${res.status}: ${JSON.stringify(body)}`);
      return {
        userId: body.userId,
        token: body.token,
        headers: { authorization: `Bearer ${body.token}`, 'content-type': 'application/json' },
      };
    },
    async close() {
      await platform.close().catch(() => {});
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
      await cleanupFiles();
    },
  };
}

/**
 * A second, empty database beside a running server, sharing its S3: for measurements that need a
 * database of their own (cleanup scans every function in it) without starting another server.
 */
export async function openScratchPlatform(
  server: BenchServer,
  localEnv: Record<string, string> = {},
): Promise<{ platform: Platform; close(): Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bench-scratch-'));
  let databaseUrl: string;
  let dropDb: (() => Promise<void>) | undefined;
  if (server.db === 'postgres') {
    const created = await createPgDatabase();
    databaseUrl = created.url;
    dropDb = created.drop;
  } else {
    databaseUrl = `sqlite:${path.join(dir, 'containerpub.sqlite')}`;
  }
  const config = loadConfig({
    DATA_DIR: dir,
    DATABASE_URL: databaseUrl,
    S3_ENDPOINT: server.s3Endpoint,
    S3_ACCESS_KEY_ID: 'S3RVER',
    S3_SECRET_ACCESS_KEY: 'S3RVER',
    LOG_LEVEL: 'warn',
    CLEANUP_CRON: 'off',
    ...localEnv,
  });
  const platform = await openPlatform(config, { logger: createLogger(config.logLevel), secretsKey: 'generate' });
  return {
    platform,
    async close() {
      await platform.close().catch(() => {});
      await dropDb?.().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
