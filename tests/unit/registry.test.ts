// RegistryClient against the real local registry (scripts/setup-services.sh starts it on
// 127.0.0.1:5000): a pushed image is listed, deleteTag removes it and is idempotent. A throwaway
// HTTP server stands in for the registry where a real one cannot be made to misbehave.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import Docker from 'dockerode';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { RegistryClient, RegistryError, sha256Digest, splitImageTag } from '../../shared/runtime/registry.ts';
import { BlobNotMountableError, pushBlob, pushImage } from '../../shared/runtime/image/push.ts';
import { imageManifest } from '../../shared/runtime/image/image-config.ts';
import { InfrastructureError } from '../../shared/runtime/types.ts';
import { dockerAvailable, requireService } from '../support/services.ts';

const REGISTRY = process.env.TEST_REGISTRY ?? '127.0.0.1:5000';
const BASE_IMAGE = process.env.TEST_BASE_IMAGE ?? 'containerpub/node-base:20';

async function servicesMissing(): Promise<string | null> {
  const dockerWhy = await dockerAvailable();
  if (dockerWhy) return `docker: ${dockerWhy}`;
  if (!(await new RegistryClient(REGISTRY, { timeoutMs: 2000 }).ping())) return `no no-auth registry answers on ${REGISTRY}`;
  try {
    await new Docker().getImage(BASE_IMAGE).inspect();
  } catch {
    return `the base image ${BASE_IMAGE} is missing`;
  }
  return null;
}

const why = await servicesMissing();
if (requireService('docker + registry', why === null, why ?? '')) registerTests();

function registerTests(): void {
  const docker = new Docker();
  const client = new RegistryClient(REGISTRY);
  const repository = `cp-registry-test-${randomBytes(4).toString('hex')}`;
  const imageRef = `${REGISTRY}/${repository}`;
  let pushedDigest = '';

  /** Pushes and returns the digest the engine reports; an {error} event in the stream fails it. */
  async function push(ref: string, tag: string): Promise<string> {
    const stream = await docker.getImage(ref).push({ tag });
    const events = await new Promise<Array<Record<string, unknown>>>((resolve, reject) =>
      docker.modem.followProgress(stream, (err, result) => (err ? reject(err) : resolve(result))),
    );
    const failed = events.find((e) => e.error || e.errorDetail);
    if (failed) throw new Error(`push of ${ref}:${tag} failed: ${String(failed.error ?? JSON.stringify(failed.errorDetail))}`);
    const aux = events.map((e) => e.aux as { Digest?: string } | undefined).find((a) => a?.Digest);
    if (!aux?.Digest) throw new Error(`push of ${ref}:${tag} reported no digest`);
    return aux.Digest;
  }

  test.before(async () => {
    await docker.getImage(BASE_IMAGE).tag({ repo: imageRef, tag: 'v1' });
    pushedDigest = await push(imageRef, 'v1');
  });

  test.after(async () => {
    // Only the local tag: the base image keeps its own. The registry keeps an empty repository
    // directory (the v2 API cannot delete repositories); its blobs go at the next garbage-collect.
    await docker.getImage(`${imageRef}:v1`).remove().catch(() => undefined);
  });

  test('happy: ping answers for a no-auth registry', async () => {
    assert.is(await client.ping(), true);
  });

  test('happy: a pushed image is in the catalog and its tag is listed', async () => {
    assert.ok((await client.catalog()).includes(repository), `catalog lists ${repository}`);
    assert.equal(await client.tags(repository), ['v1']);
  });

  test('happy: manifestDigest is the digest the push reported (not a schema1 one)', async () => {
    assert.match(pushedDigest, /^sha256:[0-9a-f]{64}$/);
    assert.is(await client.manifestDigest(repository, 'v1'), pushedDigest);
    assert.is(await client.manifestDigest(repository, 'nope'), null);
  });

  test('happy: deleteTag removes the tag, and again returns false', async () => {
    assert.is(await client.deleteTag(repository, 'v1'), true);
    assert.equal(await client.tags(repository), []);
    assert.is(await client.manifestDigest(repository, 'v1'), null);
    assert.is(await client.deleteTag(repository, 'v1'), false);
  });

  test('error: unknown repositories have no tags and nothing to delete', async () => {
    const unknown = `cp-registry-test-missing-${randomBytes(4).toString('hex')}`;
    assert.equal(await client.tags(unknown), []);
    assert.is(await client.manifestDigest(unknown, 'v1'), null);
    assert.is(await client.deleteTag(unknown, 'v1'), false);
  });

  test('security: a repository name cannot reach another path of the API', async () => {
    for (const bad of ['../_catalog', 'a/../../v2', 'UPPER', 'a?b', '']) {
      await rejects(() => client.tags(bad), /not a valid repository name/);
    }
    await rejects(() => client.deleteTag(repository, 'v1/../../x'), /not a valid tag or digest/);
  });

  test('happy: catalog and tags follow Link pagination', async () => {
    const fake = await fakeRegistry((req, res) => {
      const url = new URL(req.url!, 'http://x');
      const last = url.searchParams.get('last');
      if (url.pathname === '/v2/_catalog') {
        if (!last) return json(res, 200, { repositories: ['a', 'b'] }, '</v2/_catalog?last=b&n=2>; rel="next"');
        if (last === 'b') return json(res, 200, { repositories: ['c'] });
      }
      if (url.pathname === '/v2/a/tags/list') {
        if (!last) return json(res, 200, { name: 'a', tags: ['v1'] }, `<http://${req.headers.host}/v2/a/tags/list?last=v1&n=1>; rel="next"`);
        return json(res, 200, { name: 'a', tags: ['v2'] });
      }
      json(res, 404, { errors: [{ code: 'NAME_UNKNOWN' }] });
    });
    try {
      const c = new RegistryClient(`http://${fake.address}`);
      assert.equal(await c.catalog(), ['a', 'b', 'c']);
      assert.equal(await c.tags('a'), ['v1', 'v2']);
      assert.equal(await c.tags('zz'), []);
    } finally {
      await fake.close();
    }
  });

  test('error: a failing registry throws an error naming the registry, repository and status', async () => {
    const fake = await fakeRegistry((req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'Docker-Content-Digest': 'sha256:' + 'a'.repeat(64) });
        return res.end();
      }
      if (req.method === 'DELETE') return json(res, 405, { errors: [{ code: 'UNSUPPORTED' }] });
      json(res, 500, { errors: [{ code: 'UNKNOWN' }] });
    });
    try {
      const c = new RegistryClient(fake.address);
      const tagsErr = await rejects(() => c.tags('fn-x'), /HTTP 500/);
      assert.match(tagsErr.message, `registry ${fake.address}`);
      assert.match(tagsErr.message, 'repository fn-x');
      await rejects(() => c.catalog(), /HTTP 500/);
      await rejects(() => c.deleteTag('fn-x', 'latest'), /fn-x.*405.*deletes are disabled/);
    } finally {
      await fake.close();
    }
    // Nothing listens there any more: ping is false, and the error still names the registry.
    const gone = new RegistryClient(fake.address, { timeoutMs: 2000 });
    assert.is(await gone.ping(), false);
    await rejects(() => gone.tags('fn-x'), new RegExp(`registry ${fake.address}, repository fn-x: .*ECONNREFUSED`));
  });

  const blob = (bytes: Buffer, what = 'blob') => ({ descriptor: { mediaType: 'application/octet-stream', size: bytes.length, digest: sha256Digest(bytes) }, what, body: { bytes } });

  test('happy: blobs are uploaded once, found again, and mounted into another repository without being sent', async () => {
    const a = `${repository}-a`;
    const b = `${repository}-b`;
    const bytes = randomBytes(64 * 1024);
    const digest = sha256Digest(bytes);
    assert.is(await client.blobExists(a, digest), false);
    assert.is(await pushBlob(client, a, blob(bytes)), 'uploaded');
    assert.is(await client.blobExists(a, digest), true);
    assert.is(await pushBlob(client, a, blob(bytes)), 'present');
    assert.is(await client.blobExists(b, digest), false, 'a blob of another repository does not count');
    assert.is(await pushBlob(client, b, { descriptor: blob(bytes).descriptor, what: 'layer', mountFrom: a }), 'mounted');
    assert.ok((await client.getBlob(b, digest)).equals(bytes));
  });

  test('happy: a blob streamed from a file (several chunks) arrives whole', async () => {
    const file = path.join(os.tmpdir(), `cp-registry-blob-${randomBytes(4).toString('hex')}`);
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    fs.writeFileSync(file, bytes);
    try {
      const digest = sha256Digest(bytes);
      const repo = `${repository}-file`;
      const url = await client.startUpload(repo);
      await client.uploadBlob(repo, url, digest, { file, size: bytes.length });
      assert.ok((await client.getBlob(repo, digest)).equals(bytes));
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  test('error: a blob that can only be mounted, from where it is not, is BlobNotMountableError; with its bytes the refused mount becomes an upload', async () => {
    const bytes = randomBytes(1024);
    const target = `${repository}-c`;
    const nowhere = `${repository}-nowhere`;
    await pushBlob(client, target, { descriptor: blob(bytes).descriptor, what: 'base layer', mountFrom: nowhere }).then(
      () => assert.unreachable('nothing to mount'),
      (err) => {
        assert.instance(err, BlobNotMountableError);
        assert.match((err as Error).message, new RegExp(`base layer ${sha256Digest(bytes)} could not be mounted into ${target} from ${nowhere}`));
      },
    );
    assert.is(await pushBlob(client, target, { ...blob(bytes), mountFrom: nowhere }), 'uploaded');
  });

  test('happy: pushImage stores a manifest under its tag, read back byte for byte; the registry keeps it under our digest', async () => {
    const repo = `${repository}-image`;
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: [sha256Digest(Buffer.from('x'))] } }));
    const layer = randomBytes(2048);
    const manifest = imageManifest(
      { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: sha256Digest(config) },
      [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.length, digest: sha256Digest(layer) }],
    );
    const pushed = await pushImage(client, repo, 'latest', { blobs: [blob(config, 'config'), blob(layer, 'layer')], manifest });
    assert.is(pushed.digest, manifest.digest);
    assert.equal(pushed.outcomes.map((o) => o.outcome), ['uploaded', 'uploaded']);
    const stored = await client.getManifest(repo, 'latest');
    assert.ok(stored!.bytes.equals(manifest.bytes));
    assert.is(stored!.digest, manifest.digest);
    assert.is(stored!.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.is(await client.manifestDigest(repo, 'latest'), manifest.digest);
    assert.is((await client.getManifest(repo, manifest.digest))!.digest, manifest.digest);
    assert.is(await client.deleteTag(repo, 'latest'), true);
    assert.is(await client.getManifest(repo, 'latest'), null);
  });

  test('error: what the registry refuses as wrong (bytes not matching the digest, a manifest naming a missing blob) is a RegistryError, not an outage', async () => {
    const repo = `${repository}-wrong`;
    const url = await client.startUpload(repo);
    const err = await rejects(() => client.uploadBlob(repo, url, sha256Digest(Buffer.from('other')), { bytes: Buffer.from('these') }), /HTTP 400.*DIGEST_INVALID/);
    assert.instance(err, RegistryError);
    assert.not.instance(err, InfrastructureError);
    const missing = imageManifest({ mediaType: 'application/vnd.docker.container.image.v1+json', size: 1, digest: sha256Digest(randomBytes(8)) }, []);
    const bad = await rejects(() => client.putManifest(repo, 'latest', missing), /HTTP 400.*MANIFEST_BLOB_UNKNOWN|HTTP 400/);
    assert.instance(bad, RegistryError);
  });

  test("error: an outage (5xx, 429, no answer, refused) is an InfrastructureError; a 4xx is not; the caller's abort is its own", async () => {
    let mode = 'ok';
    const fake = await fakeRegistry((req, res) => {
      if (mode === '503') return json(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'maintenance' }] });
      if (mode === '429') return json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS' }] });
      if (mode === '401') return json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] });
      if (mode === 'hang') return; // never answers
      json(res, 404, {});
    });
    const digest = sha256Digest(Buffer.from('x'));
    try {
      const c = new RegistryClient(fake.address, { timeoutMs: 300 });
      mode = '503';
      assert.instance(await rejects(() => c.blobExists('fn-x', digest), /HTTP 503/), InfrastructureError);
      const down = await rejects(() => c.getManifest('fn-x', 'latest'), /HTTP 503.*UNAVAILABLE: maintenance/);
      assert.instance(down, InfrastructureError);
      assert.is((down as InfrastructureError).service, 'registry');
      mode = '429';
      assert.instance(await rejects(() => c.getManifest('fn-x', 'latest'), /HTTP 429/), InfrastructureError);
      mode = '401';
      const refused = await rejects(() => c.startUpload('fn-x'), /HTTP 401.*UNAUTHORIZED/);
      assert.instance(refused, RegistryError);
      assert.not.instance(refused, InfrastructureError);
      mode = 'hang';
      const started = performance.now();
      const slow = await rejects(() => c.blobExists('fn-x', digest), /no answer within 300 ms/);
      assert.instance(slow, InfrastructureError);
      assert.ok(performance.now() - started < 3000);
      const ac = new AbortController();
      setTimeout(() => ac.abort(new Error('the build was aborted')), 50);
      const c2 = new RegistryClient(fake.address, { timeoutMs: 10_000 });
      const aborted = await rejects(() => c2.blobExists('fn-x', digest, { signal: ac.signal }), /the build was aborted/);
      assert.not.instance(aborted, InfrastructureError);
    } finally {
      await fake.close();
    }
    const gone = new RegistryClient(fake.address, { timeoutMs: 2000 });
    assert.instance(await rejects(() => gone.putManifest('fn-x', 'latest', { bytes: Buffer.from('{}'), mediaType: 'x' }), /failed: (ECONNREFUSED|UND_ERR_SOCKET)/), InfrastructureError);
  });

  test('security: a blob whose bytes do not match its digest is refused; an upload sent to another origin is not followed', async () => {
    const fake = await fakeRegistry((req, res) => {
      if (req.url!.includes('/blobs/uploads/')) {
        res.writeHead(202, { Location: 'http://198.51.100.7/v2/fn-x/blobs/uploads/abc' });
        return res.end();
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      res.end('not the bytes you asked for');
    });
    try {
      const c = new RegistryClient(fake.address, { timeoutMs: 2000 });
      await rejects(() => c.getBlob('fn-x', sha256Digest(Buffer.from('expected'))), /do not match the digest/);
      const url = await c.startUpload('fn-x');
      await rejects(() => c.uploadBlob('fn-x', url, sha256Digest(Buffer.from('b')), { bytes: Buffer.from('b') }), /another origin/);
    } finally {
      await fake.close();
    }
  });

  test('splitImageTag: registry, repository and tag', () => {
    assert.equal(splitImageTag('127.0.0.1:5000/function-abc-v3:latest'), {
      registry: '127.0.0.1:5000',
      repository: 'function-abc-v3',
      tag: 'latest',
    });
    assert.equal(splitImageTag('function-abc-v3:latest'), { registry: null, repository: 'function-abc-v3', tag: 'latest' });
    assert.equal(splitImageTag('function-abc-v3'), { registry: null, repository: 'function-abc-v3', tag: 'latest' });
    assert.equal(splitImageTag('localhost:5000/fn:v2'), { registry: 'localhost:5000', repository: 'fn', tag: 'v2' });
    assert.equal(splitImageTag('localhost/fn'), { registry: 'localhost', repository: 'fn', tag: 'latest' });
    assert.equal(splitImageTag('containerpub/node-base:20'), { registry: null, repository: 'containerpub/node-base', tag: '20' });
    assert.equal(splitImageTag('registry.example.com/team/fn:1.0'), {
      registry: 'registry.example.com',
      repository: 'team/fn',
      tag: '1.0',
    });
    // a port in the registry is not a tag
    assert.equal(splitImageTag('127.0.0.1:5000/fn'), { registry: '127.0.0.1:5000', repository: 'fn', tag: 'latest' });
    const digest = 'sha256:' + 'b'.repeat(64);
    assert.equal(splitImageTag(`127.0.0.1:5000/fn:v1@${digest}`), { registry: '127.0.0.1:5000', repository: 'fn', tag: digest });
    assert.throws(() => splitImageTag(''), /empty/);
  });

  test.run();
}

/** Awaits `fn`, asserts that it rejects with a message matching `expected`, returns the error. */
async function rejects(fn: () => Promise<unknown>, expected: RegExp): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, Error);
    assert.match((err as Error).message, expected, (err as Error).message);
    return err as Error;
  }
  assert.unreachable(`expected a rejection matching ${expected}`);
  throw new Error('unreachable');
}

function json(res: http.ServerResponse, status: number, body: unknown, link?: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json', ...(link ? { Link: link } : {}) });
  res.end(JSON.stringify(body));
}

async function fakeRegistry(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
