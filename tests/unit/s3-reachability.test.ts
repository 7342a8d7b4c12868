// The S3 reachability check before a deploy (S3Storage.checkReachable): a success is remembered for
// a second and, under steady traffic, renewed in the background before it lapses, so no deploy
// waits for the probe; a store that went down is still refused once the second is out.
import '../../shared/storage/s3-storage.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { EMBEDDED_S3_CREDENTIALS, startEmbeddedS3 } from '../../shared/storage/embedded-s3.ts';
import { S3Storage } from '../../shared/storage/s3-storage.ts';

/** Until the clock passes `at` (bounded): the memo is a matter of time, not of a state to poll. */
async function clockPast(at: number): Promise<void> {
  while (Date.now() <= at) await new Promise((r) => setTimeout(r, Math.max(1, Math.min(50, at + 1 - Date.now()))));
}

test('a remembered success is renewed in the background before it lapses; a store that went down is refused after it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-reach-'));
  const s3 = await startEmbeddedS3({ directory: dir, bucket: 'containerpub' });
  const storage = new S3Storage({ endpoint: s3.endpoint, bucket: 'containerpub', region: 'us-east-1', ...EMBEDDED_S3_CREDENTIALS });
  // the store's answers to the probe, counted as they come back
  let probes = 0;
  const client = (storage as unknown as { s3: { send: (...args: unknown[]) => Promise<unknown> } }).s3;
  const send = client.send.bind(client);
  client.send = (...args: unknown[]) => send(...args).finally(() => probes++);
  try {
    await storage.checkReachable();
    // the memo runs a second from the answer, which came before this
    const t1 = Date.now();
    assert.is(probes, 1);
    // in the memo's last quarter: answered at once, and a renewal set off that has not come back yet
    await clockPast(t1 + 800);
    await storage.checkReachable();
    assert.is(probes, 1, 'the caller did not wait for the renewal');
    for (let i = 0; probes < 2; i++) {
      if (i > 500) throw new Error('the renewal never came back');
      await new Promise((r) => setTimeout(r, 5));
    }
    const renewedBy = Date.now();
    // past the first memo's end: still remembered (renewed), no new probe
    await clockPast(t1 + 1100);
    await storage.checkReachable();
    assert.is(probes, 2, 'renewed: no probe past the first second');

    // a bucket that does not exist is not reachable storage (the probe's key is missing either way)
    const elsewhere = new S3Storage({ endpoint: s3.endpoint, bucket: 'no-such-bucket', region: 'us-east-1', ...EMBEDDED_S3_CREDENTIALS });
    let missing: { name?: string } | undefined;
    await elsewhere.checkReachable().catch((err) => (missing = err));
    assert.is(missing?.name, 'NoSuchBucket');

    // the store goes down: remembered for at most a second after the last success, then refused
    await s3.close();
    await clockPast(renewedBy + 1100);
    let refused: unknown;
    await storage.checkReachable().catch((err) => (refused = err));
    assert.ok(refused, 'a store that is down is refused once the memo lapsed');
  } finally {
    await s3.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
