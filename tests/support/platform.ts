// A real platform for one test file: a temporary DATA_DIR, a fresh SQLite file or PostgreSQL
// database (TEST_DB), the embedded S3-compatible server over HTTP, and the API on a free port.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Env } from '../../shared/config.ts';
import { openPlatform, type Platform } from '../../shared/platform.ts';
import { createLogger } from '../../shared/logger.ts';
import { createApi, serveApi, type ApiOptions } from '../../api/server.ts';
import { client, type Client } from './http.ts';
import { driverFromConfig } from '../../shared/runtime/from-config.ts';
import type { RuntimeDriver } from '../../shared/runtime/types.ts';
import { Runner } from '../../runner/runner.ts';
import { Invoker } from '../../shared/domain/invoke.ts';
import { startEmbeddedS3 } from '../../shared/storage/embedded-s3.ts';
import { createPgDatabase, postgresAvailable, requireService, testDbKind } from './services.ts';

export interface TestPlatform {
  url: string;
  /** the S3 server's own address (embedded, or the one of `directS3`) */
  s3Endpoint: string;
  platform: Platform;
  dataDir: string;
  http: Client;
  driver: RuntimeDriver;
  /** invocations and warm instances of the API process */
  invoker: Invoker;
  runner?: Runner;
  /** registers a fresh user and returns a client carrying its token */
  newUser(): Promise<Client & { userId: string; token: string }>;
  /** a second API process-equivalent (own pools and clients) over the same database and S3 */
  replica(): Promise<{ url: string; platform: Platform; invoker: Invoker; close(): Promise<void> }>;
  close(): Promise<void>;
}

let userCounter = 0;
const S3RVER_KEYS = { S3_ACCESS_KEY_ID: 'S3RVER', S3_SECRET_ACCESS_KEY: 'S3RVER' };

/** null when the database this run asks for is not available outside CI (the suite then skips). */
export interface TestPlatformOptions {
  /** start an in-process runner (and give the API the same driver for invocations) */
  runner?: boolean;
  /**
   * S3 as in production: an s3rver started beside the platform and given as S3_ENDPOINT, so upload
   * URLs are S3 presigned URLs (with the embedded one they point at the API).
   */
  directS3?: boolean;
  /** every log line of the platform (its level from LOG_LEVEL / TEST_LOG_LEVEL): to check what logs say */
  logSink?: (line: string) => void;
}

export async function startTestPlatform(
  env: Partial<Record<keyof Env | string, string>> = {},
  opts: TestPlatformOptions = {},
): Promise<TestPlatform | null> {
  const kind = testDbKind();
  let databaseUrl: string | undefined;
  let dropDb: (() => Promise<void>) | undefined;
  if (kind === 'postgres') {
    const why = await postgresAvailable();
    if (!requireService('PostgreSQL', why === null, why ?? '')) return null;
    const db = await createPgDatabase();
    databaseUrl = db.url;
    dropDb = db.drop;
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-test-'));
  const direct = opts.directS3
    ? await startEmbeddedS3({ directory: path.join(dataDir, 'direct-s3'), bucket: env.S3_BUCKET ?? 'containerpub' })
    : undefined;
  const config = loadConfig({
    DATA_DIR: dataDir,
    PORT: '0',
    // warnings and errors reach the suite's output, which tests/run.ts prints when a suite fails:
    // an unexpected 503 or 500 then shows its cause (TEST_LOG_LEVEL=silent|info|debug to change it)
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    RUNTIME_DRIVER: 'process',
    RUNNER_POLL_MS: '100',
    // the default backoff (5 s, doubling) would stretch every test whose build is retried
    BUILD_RETRY_BASE_MS: '100',
    // Suites register many users from 127.0.0.1; tests/accounts.test.ts turns the limits on.
    AUTH_RATE_LIMIT_PER_MINUTE: '0',
    AUTH_RATE_LIMIT_PER_EMAIL_PER_MINUTE: '0',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...(direct ? { S3_ENDPOINT: direct.endpoint, ...S3RVER_KEYS } : {}),
    ...env,
  });
  // like `npm start`: the first open generates DATA_DIR/secrets.key
  const platform = await openPlatform(config, { logger: createLogger(config.logLevel, {}, opts.logSink), secretsKey: 'generate' });
  const driver = await driverFromConfig(config, platform.logger);
  const invoker = new Invoker(platform, driver);
  await invoker.start();
  const api: ApiOptions = { driver, invoker };
  const runner = opts.runner ? new Runner(platform, driver) : undefined;
  await runner?.start();
  const served = await serveApi(createApi(platform, api), { host: '127.0.0.1', port: 0 });
  const http = client(served.url);
  return {
    url: served.url,
    s3Endpoint: direct?.endpoint ?? platform.embeddedS3?.endpoint ?? config.s3.endpoint!,
    platform,
    dataDir,
    http,
    async newUser() {
      const email = `user${++userCounter}-${process.pid}-${Date.now()}@example.com`;
      const res = await http.post('/api/auth/register', { email, password: 'correct horse battery' });
      if (res.status !== 201) throw new Error(`register failed: ${res.status} ${JSON.stringify(res.body)}`);
      return Object.assign(client(served.url, res.body.token), { userId: res.body.userId, token: res.body.token });
    },
    async replica() {
      const replicaConfig = {
        ...config,
        s3: { ...config.s3, endpoint: platform.embeddedS3?.endpoint ?? config.s3.endpoint, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      };
      const rp = await openPlatform(replicaConfig, { logger: createLogger(config.logLevel) });
      const ri = new Invoker(rp, driver);
      await ri.start();
      const rs = await serveApi(createApi(rp, { driver, invoker: ri }), { host: '127.0.0.1', port: 0 });
      return {
        url: rs.url,
        platform: rp,
        invoker: ri,
        close: async () => {
          await rs.close();
          await ri.close(0);
          await rp.close();
        },
      };
    },
    driver,
    invoker,
    runner,
    async close() {
      await served.close();
      await invoker.close(0);
      await runner?.stop(5000);
      await driver.close();
      await platform.close();
      await direct?.close();
      await dropDb?.();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
