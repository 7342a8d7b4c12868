// The shared resources every entry point (API, runner, scripts, tests) works with.
import path from 'node:path';
import type { Config } from './config.ts';
import { openDatabase, type Db } from './db/knex.ts';
import { createLogger, type Logger } from './logger.ts';
import { bindMetrics, PlatformMetrics } from './observability/metrics.ts';
import { loadSecretBox, SecretsKeyError, UnavailableSecretBox, type SecretBox } from './secrets.ts';
import { EMBEDDED_S3_CREDENTIALS, startEmbeddedS3, type EmbeddedS3 } from './storage/embedded-s3.ts';
import { S3Storage } from './storage/s3-storage.ts';
import { ApiUploadUrls, loadUploadSigningSecret, S3UploadUrls, type UploadUrlIssuer } from './storage/upload-urls.ts';

export interface Platform {
  config: Config;
  db: Db;
  storage: S3Storage;
  logger: Logger;
  /** Prometheus metrics of this platform (its own registry): GET /metrics, the runner's metrics port */
  metrics: PlatformMetrics;
  /** set when S3_ENDPOINT is unset and the embedded server was started */
  embeddedS3?: EmbeddedS3;
  /** issues upload URLs: S3 presigned ones, or the API's own while S3 is embedded */
  uploadUrls: UploadUrlIssuer;
  /** set while S3 is embedded: the API receives uploads itself (api/routes/uploads.ts) */
  uploadRelay?: ApiUploadUrls;
  /**
   * seals and opens function secrets (shared/secrets.ts, a SecretSealer). Always set: a process that
   * serves or builds functions does not start without its key (see OpenPlatformOptions.secretsKey).
   */
  secrets: SecretBox;
  close(): Promise<void>;
}

export interface OpenPlatformOptions {
  logger?: Logger;
  /**
   * How to get the secrets key:
   * - `require` (default: `start:api`, `start:runner`): SECRETS_KEY or an existing key file, verified
   *   against the key check; otherwise opening fails with a message naming SECRETS_KEY
   * - `generate` (`npm start`): as require, and create DATA_DIR/secrets.key on the first run
   * - `none`: processes that never touch secrets (`npm run cleanup`); any use of the box throws
   */
  secretsKey?: 'require' | 'generate' | 'none';
}

export async function openPlatform(config: Config, opts: OpenPlatformOptions = {}): Promise<Platform> {
  const logger = opts.logger ?? createLogger(config.logLevel, {}, undefined, config.logFormat);
  let embeddedS3: EmbeddedS3 | undefined;
  let s3 = config.s3;
  if (!s3.endpoint) {
    embeddedS3 = await startEmbeddedS3({
      directory: path.join(config.dataDir, 's3'),
      bucket: s3.bucket,
      // Loopback only, whatever HOST says: s3rver checks no signatures, so anyone who reached it
      // could write any object. Clients upload through the API instead (uploadRelay).
      host: '127.0.0.1',
    });
    s3 = { ...s3, endpoint: embeddedS3.endpoint, ...EMBEDDED_S3_CREDENTIALS };
    logger.info('embedded S3-compatible server started', { endpoint: embeddedS3.endpoint });
  }
  const storage = new S3Storage({
    endpoint: s3.endpoint!,
    publicEndpoint: s3.publicEndpoint,
    bucket: s3.bucket,
    region: s3.region,
    accessKeyId: s3.accessKeyId!,
    secretAccessKey: s3.secretAccessKey!,
  }, { ioTimeoutMs: config.runner.ioTimeoutMs });
  let db: Db | undefined;
  let secrets: SecretBox;
  try {
    await storage.ensureBucket();
    db = await openDatabase(config.database, config.databaseTimeouts);
    const mode = opts.secretsKey ?? 'require';
    secrets =
      mode === 'none'
        ? new UnavailableSecretBox('this process was started without the secrets key (it does not serve functions)')
        : await loadSecretBox(config, db, { generate: mode === 'generate', logger });
  } catch (err) {
    await db?.close();
    storage.destroy();
    await embeddedS3?.close();
    throw err;
  }
  const metrics = new PlatformMetrics(db);
  bindMetrics(db, metrics);
  const uploadRelay = embeddedS3
    ? new ApiUploadUrls(loadUploadSigningSecret(config.dataDir, config.uploads.signingSecret), config.uploads.publicUrl)
    : undefined;
  return {
    config,
    db,
    storage,
    logger,
    metrics,
    embeddedS3,
    uploadUrls: uploadRelay ?? new S3UploadUrls(storage),
    uploadRelay,
    secrets,
    async close() {
      await db!.close();
      storage.destroy();
      await embeddedS3?.close();
    },
  };
}

/** For entry points: a missing or wrong secrets key stops the process with the message, no stack trace. */
export async function openPlatformOrExit(config: Config, opts: OpenPlatformOptions = {}): Promise<Platform> {
  try {
    return await openPlatform(config, opts);
  } catch (err) {
    if (err instanceof SecretsKeyError) {
      process.stderr.write(`containerpub: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
