// The embedded S3 server stores an object whole before it answers the PUT, or not at all
// (embedded-s3.ts, writeObjectsWhole): s3rver 3.7.1 on its own answered before the file was
// written, and wrote in place, so a GET could read an object short or empty.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import S3rver from 's3rver';
import { EMBEDDED_S3_CREDENTIALS, startEmbeddedS3, writeObjectsWhole } from '../../shared/storage/embedded-s3.ts';
import { S3Storage } from '../../shared/storage/s3-storage.ts';

const BUCKET = 'containerpub';
const storageAt = (endpoint: string) => new S3Storage({ endpoint, bucket: BUCKET, region: 'us-east-1', ...EMBEDDED_S3_CREDENTIALS });
/** 1 MiB in 64 KiB chunks: the file is written in several steps */
const body = randomBytes(1024 * 1024);
const chunked = () => Readable.from(Array.from({ length: 16 }, (_, i) => body.subarray(i * 65536, (i + 1) * 65536)));

/**
 * An s3rver whose store reports, at the moment it records an object's metadata (the step before
 * the PUT is answered), how many bytes of the object are in its file.
 */
async function s3rverReportingWrites(whole: boolean) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-s3-writes-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory: dir, silent: true, configureBuckets: [{ name: BUCKET, configs: [] }] });
  if (whole) writeObjectsWhole(server.store);
  const writtenWhenAnswered: number[] = [];
  const putMetadata = server.store.putMetadata.bind(server.store);
  server.store.putMetadata = async (bucket, key, metadata, md5) => {
    writtenWhenAnswered.push(fs.statSync(server.store.getResourcePath(bucket, key, 'object')).size);
    return putMetadata(bucket, key, metadata, md5);
  };
  const address = await server.run();
  return {
    storage: storageAt(`http://127.0.0.1:${address.port}`),
    writtenWhenAnswered,
    close: async () => {
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('a PUT is answered once the whole object is in its file (s3rver alone answered before)', async () => {
  const fixed = await s3rverReportingWrites(true);
  const alone = await s3rverReportingWrites(false);
  try {
    for (let i = 0; i < 3; i++) {
      await fixed.storage.putStream(`k${i}`, chunked(), body.length);
      await alone.storage.putStream(`k${i}`, chunked(), body.length);
    }
    assert.equal(fixed.writtenWhenAnswered, [body.length, body.length, body.length]);
    // what the fix is for (s3rver 3.7.1 is pinned): without it the file was short at that moment
    assert.ok(
      alone.writtenWhenAnswered.some((n) => n < body.length),
      `s3rver alone had written ${alone.writtenWhenAnswered.join(', ')} of ${body.length} bytes when it answered`,
    );
  } finally {
    await fixed.close();
    await alone.close();
  }
});

test('an upload cut mid-body leaves no object, and an overwrite is read whole or not at all', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-s3-cut-'));
  const s3 = await startEmbeddedS3({ directory: dir, bucket: BUCKET });
  const storage = storageAt(s3.endpoint);
  try {
    // a presigned PUT of 1 MiB whose connection is cut after half of it
    const sha256 = createHash('sha256').update(body).digest('hex');
    const upload = storage.presignPut('cut', { expiresInSeconds: 60, contentLength: body.length, sha256 });
    const target = new URL(upload.url);
    const files = () => fs.readdirSync(path.join(dir, BUCKET)).filter((f) => f.startsWith('cut'));
    const written = () => files().reduce((n, f) => n + fs.statSync(path.join(dir, BUCKET, f)).size, 0);
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname + target.search, method: 'PUT', headers: upload.headers });
    const ended = new Promise<void>((resolve) => {
      req.on('error', () => resolve());
      req.on('response', (res) => {
        res.resume();
        resolve();
      });
    });
    req.write(body.subarray(0, body.length / 2));
    // cut once the server is writing what it received (s3rver alone wrote it where the object goes)
    const writing = Date.now() + 5000;
    while (written() === 0 && Date.now() < writing) await new Promise((r) => setTimeout(r, 10));
    assert.ok(written() > 0, 'the server began writing the body');
    req.destroy();
    await ended;
    // the server notices the cut when its read of the body fails: the object never appears
    const deadline = Date.now() + 5000;
    let leftovers: string[] = [];
    do {
      leftovers = files();
      if (leftovers.length === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    } while (Date.now() < deadline);
    assert.equal(leftovers, [], 'no object file and no partial file is left');
    assert.is(await storage.digest('cut'), null, 'no object');

    // overwrites of one key, each read right after its PUT: always the whole of the latest
    for (let i = 0; i < 5; i++) {
      const version = randomBytes(256 * 1024 + i);
      await storage.putStream('again', Readable.from([version.subarray(0, 100_000), version.subarray(100_000)]), version.length);
      const read = await storage.digest('again');
      assert.equal(read, { size: version.length, sha256: createHash('sha256').update(version).digest('hex') });
    }
    assert.equal(fs.readdirSync(path.join(dir, BUCKET)).filter((f) => f.includes('.partial')), [], 'no partial file is left');
  } finally {
    await s3.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
