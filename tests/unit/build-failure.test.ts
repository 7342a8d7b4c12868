// How a failed build attempt is classified, against errors produced for real where they can be:
// S3 refusing connections, hanging before it answers, stalling mid-download or answering 404; the
// Docker engine's socket missing; the function's own failures; and the backoff curve.
import '../../shared/storage/s3-storage.ts';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ArchiveError } from '../../shared/archive/extract.ts';
import { retryDelayMs } from '../../shared/domain/build-queue.ts';
import { BuildTimedOutError, classifyBuildFailure } from '../../shared/runtime/build-failure.ts';
import { RegistryError } from '../../shared/runtime/registry.ts';
import { BuildError, InfrastructureError } from '../../shared/runtime/types.ts';
import { startEmbeddedS3 } from '../../shared/storage/embedded-s3.ts';
import { S3Storage } from '../../shared/storage/s3-storage.ts';
import { isDependencyOutage } from '../../shared/outage.ts';

const storage = (endpoint: string, ioTimeoutMs = 500) =>
  new S3Storage(
    { endpoint, bucket: 'b', region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    { ioTimeoutMs },
  );

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** An HTTP server whose handler decides how (and whether) to answer. */
async function server(handler: http.RequestListener) {
  const sockets = new Set<net.Socket>();
  const s = http.createServer(handler);
  s.on('connection', (c) => sockets.add(c));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => {
      for (const c of sockets) c.destroy();
      s.close(() => r());
    }),
  };
}

const caught = async (work: () => Promise<unknown>) => {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
};

const drain = async (stream: NodeJS.ReadableStream) => {
  for await (const _ of stream) {
    // read to the end (or the error)
  }
};

test('S3 refusing connections: an S3 outage', async () => {
  const s3 = storage(`http://127.0.0.1:${await closedPort()}`);
  const err = await caught(() => s3.getStream('functions/x/v1/function.tar.gz'));
  s3.destroy();
  assert.instance(err, InfrastructureError);
  assert.equal(classifyBuildFailure(err), { kind: 'outage', service: 's3', message: (err as Error).message });
  assert.ok(isDependencyOutage(err), 'the API answers 503 for it too');
});

test('S3 not answering within BUILD_IO_TIMEOUT_MS, and S3 stalling mid-download: S3 outages, in bounded time', async () => {
  const silent = await server(() => {}); // never answers
  const s3 = storage(silent.url, 300);
  try {
    const started = Date.now();
    const err = await caught(() => s3.getStream('k'));
    assert.ok(Date.now() - started < 5000);
    assert.match((err as Error).message, /no answer within 300 ms/);
    assert.is(classifyBuildFailure(err).kind, 'outage');
    const copy = await caught(() => s3.copy('a', 'b'));
    assert.match((copy as Error).message, /copy a to b: no answer within 300 ms/);
  } finally {
    s3.destroy();
    await silent.close();
  }
  // answers, sends a first chunk, then nothing
  const staller = await server((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': '1000000' });
    res.write(Buffer.alloc(1000));
  });
  const s3b = storage(staller.url, 300);
  try {
    const body = await s3b.getStream('k');
    const started = Date.now();
    const err = await caught(() => drain(body));
    assert.ok(Date.now() - started < 5000);
    assert.match((err as Error).message, /stalled \(no data for 300 ms\)/);
    assert.is(classifyBuildFailure(err).kind, 'outage');
  } finally {
    s3b.destroy();
    await staller.close();
  }
});

test('S3 answering 5xx is an outage; a 404 is a real answer, not an outage', async () => {
  const broken = await server((_req, res) => {
    res.writeHead(503, { 'content-type': 'application/xml' });
    res.end('<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>');
  });
  const s3 = storage(broken.url, 2000);
  try {
    assert.is(classifyBuildFailure(await caught(() => s3.getStream('k'))).kind, 'outage');
  } finally {
    s3.destroy();
    await broken.close();
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'build-failure-'));
  const real = await startEmbeddedS3({ directory: dir, bucket: 'b' });
  const s3b = storage(real.endpoint);
  try {
    const missing = await caught(() => s3b.getStream('nothing/here'));
    assert.not.instance(missing, InfrastructureError);
    assert.is(classifyBuildFailure(missing).kind, 'unknown');
  } finally {
    s3b.destroy();
    await real.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an aborted download ends with the abort reason, not an S3 error', async () => {
  const silent = await server(() => {});
  const s3 = storage(silent.url, 10_000);
  try {
    const abort = new AbortController();
    const why = new Error('lease lost');
    setTimeout(() => abort.abort(why), 50);
    assert.is(await caught(() => s3.getStream('k', { signal: abort.signal })), why);
  } finally {
    s3.destroy();
    await silent.close();
  }
});

test('the Docker engine socket missing: an engine outage', async () => {
  const docker = new Docker({ socketPath: path.join(os.tmpdir(), `no-engine-${process.pid}.sock`) });
  const err = await caught(() => docker.ping());
  assert.equal(classifyBuildFailure(err).kind, 'outage');
  assert.is((classifyBuildFailure(err) as { service: string }).service, 'engine');
});

test('a connection refused anywhere, the registry unreachable or failing: outages', async () => {
  const port = await closedPort();
  const refused = await caught(() => fetch(`http://127.0.0.1:${port}/v2/`));
  assert.is(classifyBuildFailure(refused).kind, 'outage');
  assert.is((classifyBuildFailure(new RegistryError('no answer', null)) as { service: string }).service, 'registry');
  assert.is(classifyBuildFailure(new RegistryError('HTTP 502', 502)).kind, 'outage');
  assert.is(classifyBuildFailure(new RegistryError('HTTP 404', 404)).kind, 'unknown');
  assert.is((classifyBuildFailure(new InfrastructureError('npm', 'registry.npmjs.org: 503')) as { service: string }).service, 'npm');
});

test("the function's own failures are final; anything else is unknown", () => {
  assert.is(classifyBuildFailure(new ArchiveError('archive is not a tar file')).kind, 'final');
  assert.is(classifyBuildFailure(new BuildError('COPY failed')).kind, 'final');
  const timedOut = new BuildTimedOutError(4000);
  assert.equal(classifyBuildFailure(timedOut), { kind: 'final', message: 'timed out after 4 s (BUILD_TIMEOUT_MS)' });
  assert.is(classifyBuildFailure(new TypeError("Cannot read properties of undefined (reading 'id')")).kind, 'unknown');
  assert.is(classifyBuildFailure(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })).kind, 'unknown');
});

test('backoff: retryBaseMs × 2^(n−1), within ±20 %', () => {
  for (const n of [1, 2, 3, 4]) {
    const nominal = 5000 * 2 ** (n - 1);
    assert.is(retryDelayMs(5000, n, () => 0), nominal * 0.8);
    assert.is(retryDelayMs(5000, n, () => 1), nominal * 1.2);
    assert.is(retryDelayMs(5000, n, () => 0.5), nominal);
  }
  const seen = new Set(Array.from({ length: 50 }, () => retryDelayMs(1000, 1)));
  assert.ok(seen.size > 10, 'jittered');
  assert.ok(Number.isFinite(retryDelayMs(1000, 500)), 'no overflow');
});

test.run();
