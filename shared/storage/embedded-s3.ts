// The embedded S3-compatible server (s3rver) for running with no setup: real S3 over HTTP,
// data under DATA_DIR/s3. Its credentials are fixed by s3rver.
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import S3rver from 's3rver';

export const EMBEDDED_S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

export interface EmbeddedS3 {
  endpoint: string;
  close(): Promise<void>;
}

export async function startEmbeddedS3(opts: {
  directory: string;
  bucket: string;
  host?: string;
  port?: number;
}): Promise<EmbeddedS3> {
  fs.mkdirSync(opts.directory, { recursive: true });
  const server = new S3rver({
    address: opts.host ?? '127.0.0.1',
    port: opts.port ?? 0,
    directory: opts.directory,
    silent: true,
    configureBuckets: [{ name: opts.bucket, configs: [] }],
  });
  const address = (await server.run()) as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    endpoint: `http://${host}:${address.port}`,
    // once: s3rver throws when closed twice (a test stops it to cause an outage, then the platform closes)
    close: () => (closed ??= server.close()),
  };
}
