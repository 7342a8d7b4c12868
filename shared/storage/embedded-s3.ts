// The embedded S3-compatible server (s3rver) for running with no setup: real S3 over HTTP,
// data under DATA_DIR/s3. Its credentials are fixed by s3rver.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { S3rverStore, S3rverStoredObject } from 's3rver';

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
  // loaded here, not at start: s3rver and koa are ~0.15 s of modules that a platform on a real S3
  // (S3_ENDPOINT) never needs
  const { default: S3rver } = await import('s3rver');
  const server = new S3rver({
    address: opts.host ?? '127.0.0.1',
    port: opts.port ?? 0,
    directory: opts.directory,
    silent: true,
    configureBuckets: [{ name: opts.bucket, configs: [] }],
  });
  writeObjectsWhole(server.store);
  const address = (await server.run()) as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  let closed: Promise<void> | undefined;
  return {
    endpoint: `http://${host}:${address.port}`,
    // once: s3rver throws when closed twice (a test stops it to cause an outage, then the platform closes)
    close: () => (closed ??= server.close()),
  };
}

/**
 * s3rver 3.7.1 answers a PUT once the body has gone through its md5 step, before the file is
 * written (it waits for its transform's 'finish', not the file's): a GET right after the answer
 * could read the object short or empty, and /complete then saw a checksum mismatch (CI, once:
 * the sha256 of nothing). It also wrote in place, so a GET during an overwrite read a part.
 * Here the body goes to a temporary file in the same directory, renamed into place once written
 * and closed, before the PUT is answered: an object is there whole, or not at all.
 */
export function writeObjectsWhole(store: S3rverStore): void {
  store.putObject = async function putObjectWhole(object: S3rverStoredObject) {
    const objectPath = store.getResourcePath(object.bucket, object.key, 'object');
    await fs.promises.mkdir(path.dirname(objectPath), { recursive: true });
    // not a name s3rver lists (it lists the files ending in its object suffix)
    const partial = `${objectPath}.${randomBytes(6).toString('hex')}.partial`;
    const md5 = createHash('md5');
    let size = 0;
    const content = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
    const measure = new Transform({
      transform(chunk: Buffer, _enc, done) {
        md5.update(chunk);
        size += chunk.length;
        done(null, chunk);
      },
    });
    try {
      await pipeline(content, measure, fs.createWriteStream(partial));
      await fs.promises.rename(partial, objectPath);
    } catch (err) {
      await fs.promises.rm(partial, { force: true });
      throw err;
    }
    const digest = md5.digest('hex');
    await store.putMetadata(object.bucket, object.key, object.metadata, digest);
    return { size, md5: digest };
  };
}
