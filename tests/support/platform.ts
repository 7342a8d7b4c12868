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
import { createPgDatabase, postgresAvailable, requireService, testDbKind } from './services.ts';

export interface TestPlatform {
  url: string;
  platform: Platform;
  dataDir: string;
  http: Client;
  /** registers a fresh user and returns a client carrying its token */
  newUser(): Promise<Client & { userId: string; token: string }>;
  /** a second API process-equivalent (own pools and clients) over the same database and S3 */
  replica(): Promise<{ url: string; platform: Platform; close(): Promise<void> }>;
  close(): Promise<void>;
}

let userCounter = 0;

/** null when the database this run asks for is not available outside CI (the suite then skips). */
export async function startTestPlatform(
  env: Partial<Record<keyof Env | string, string>> = {},
  api: ApiOptions = {},
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
  const config = loadConfig({
    DATA_DIR: dataDir,
    PORT: '0',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    ...env,
  });
  const platform = await openPlatform(config, { logger: createLogger(config.logLevel) });
  const served = await serveApi(createApi(platform, api), { host: '127.0.0.1', port: 0 });
  const http = client(served.url);
  return {
    url: served.url,
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
      const rs = await serveApi(createApi(rp, api), { host: '127.0.0.1', port: 0 });
      return { url: rs.url, platform: rp, close: async () => { await rs.close(); await rp.close(); } };
    },
    async close() {
      await served.close();
      await platform.close();
      await dropDb?.();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
