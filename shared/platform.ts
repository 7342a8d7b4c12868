// The shared resources every entry point (API, runner, scripts, tests) works with.
import path from 'node:path';
import type { Config } from './config.ts';
import { openDatabase, type Db } from './db/knex.ts';
import { createLogger, type Logger } from './logger.ts';
import { EMBEDDED_S3_CREDENTIALS, startEmbeddedS3, type EmbeddedS3 } from './storage/embedded-s3.ts';
import { S3Storage } from './storage/s3-storage.ts';
import type { SecretSealer } from './domain/release-config.ts';
import { ApiUploadUrls, loadUploadSigningSecret, S3UploadUrls, type UploadUrlIssuer } from './storage/upload-urls.ts';

export interface Platform {
  config: Config;
  db: Db;
  storage: S3Storage;
  logger: Logger;
  /** set when S3_ENDPOINT is unset and the embedded server was started */
  embeddedS3?: EmbeddedS3;
  /** issues upload URLs: S3 presigned ones, or the API's own while S3 is embedded */
  uploadUrls: UploadUrlIssuer;
  /** set while S3 is embedded: the API receives uploads itself (api/routes/uploads.ts) */
  uploadRelay?: ApiUploadUrls;
  /** seals and opens function secrets (SECRETS_KEY); unset: secrets cannot be stored or used */
  secrets?: SecretSealer;
  close(): Promise<void>;
}

export async function openPlatform(config: Config, opts: { logger?: Logger } = {}): Promise<Platform> {
  const logger = opts.logger ?? createLogger(config.logLevel);
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
  });
  let db: Db | undefined;
  try {
    await storage.ensureBucket();
    db = await openDatabase(config.database, config.databaseTimeouts);
  } catch (err) {
    storage.destroy();
    await embeddedS3?.close();
    throw err;
  }
  const uploadRelay = embeddedS3
    ? new ApiUploadUrls(loadUploadSigningSecret(config.dataDir, config.uploads.signingSecret), config.uploads.publicUrl)
    : undefined;
  return {
    config,
    db,
    storage,
    logger,
    embeddedS3,
    uploadUrls: uploadRelay ?? new S3UploadUrls(storage),
    uploadRelay,
    async close() {
      await db!.close();
      storage.destroy();
      await embeddedS3?.close();
    },
  };
}
