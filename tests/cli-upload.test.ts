// The CLI's upload (scripts/cli/upload.ts) after a transient failure: a connection cut mid-body or
// after the body, through the API's own upload URL (S3 embedded) and a real TCP proxy that cuts it;
// a 5xx from storage, from a stand-in for S3 (below); and what is not tried again.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { uploadArchive, UPLOAD_ATTEMPTS, type PresignedTarget } from '../scripts/cli/upload.ts';
import { CliError } from '../scripts/cli/errors.ts';
import { makeNodeFunction } from './support/archives.ts';
import { declaration, waitForBuild } from './support/flows.ts';
import { startTestPlatform, type TestPlatform } from './support/platform.ts';

const t = await startTestPlatform({}, { runner: true });
if (!t) process.exit(0);
const tp = t as TestPlatform;

/** ~90 KB: big enough to be cut half-way. */
const archive = (tag: string) =>
  makeNodeFunction(`export default async () => ({ tag: ${JSON.stringify(tag)} });`, { 'pad.txt': randomBytes(64 * 1024).toString('base64') });

/**
 * A TCP proxy to the API whose first connection is cut: `mid-body` once the request's headers and
 * some of its body have gone through (the API reads a body that stops), `answer` once the API has
 * started answering (everything was sent and stored; the client never sees the answer). Later
 * connections pass.
 */
async function cuttingProxy(upstream: string, where: 'mid-body' | 'answer') {
  const target = new URL(upstream);
  let connections = 0;
  let cuts = 0;
  const server = net.createServer((client) => {
    const first = connections++ === 0;
    const up = net.connect(Number(target.port), target.hostname);
    const cutBoth = () => {
      cuts++;
      client.resetAndDestroy();
      up.destroy();
    };
    let sent = 0;
    let headerEnd = -1;
    let head = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      if (first && where === 'mid-body') {
        if (headerEnd < 0) {
          head = Buffer.concat([head, chunk]);
          const i = head.indexOf('\r\n\r\n');
          if (i >= 0) headerEnd = i + 4;
        }
        if (headerEnd >= 0 && sent + chunk.length > headerEnd + 16 * 1024) {
          // some of the body goes, then the connection breaks
          up.write(chunk.subarray(0, Math.max(0, headerEnd + 16 * 1024 - sent)), () => cutBoth());
          sent += chunk.length;
          client.pause();
          return;
        }
      }
      sent += chunk.length;
      up.write(chunk);
    });
    up.on('data', (chunk: Buffer) => {
      if (first && where === 'answer') return cutBoth();
      client.write(chunk);
    });
    client.on('end', () => up.end());
    up.on('end', () => client.end());
    client.on('error', () => up.destroy());
    up.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    cuts: () => cuts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** A deploy whose upload URL (the API's own, S3 embedded) is rewritten to go through `origin`. */
async function deployThrough(api: Awaited<ReturnType<TestPlatform['newUser']>>, name: string, body: Buffer, origin: string) {
  const res = await api.post('/api/functions/deploy', { name, ...declaration(body) });
  assert.is(res.status, 201, JSON.stringify(res.body));
  const url = new URL(res.body.upload.url);
  assert.ok(url.pathname.startsWith('/api/uploads/'), url.pathname);
  const through = new URL(url.pathname + url.search, origin);
  const target: PresignedTarget = { method: res.body.upload.method, url: through.toString(), headers: res.body.upload.headers };
  return { id: res.body.id as string, version: res.body.version as number, target };
}

/** The deploy completes (the stored archive checked), builds and serves the uploaded code. */
async function completesAndServes(api: Awaited<ReturnType<TestPlatform['newUser']>>, d: { id: string; version: number }, tag: string) {
  const complete = await api.post(`/api/functions/${d.id}/deployments/${d.version}/complete`);
  assert.is(complete.status, 202, JSON.stringify(complete.body));
  assert.is((await waitForBuild(api, d.id, d.version)).status, 'active');
  assert.is((await api.post(`/api/functions/${d.id}/invoke`, {})).body.result.tag, tag);
}

const cut = suite('a connection cut during the upload');

cut('mid-body: the API gives the upload back, the next attempt stores it, and the version goes live', async () => {
  const api = await tp.newUser();
  const proxy = await cuttingProxy(tp.url, 'mid-body');
  try {
    const body = await archive('after-a-cut');
    const d = await deployThrough(api, 'cut-mid-body', body, proxy.origin);
    const retries: { attempt: number; reason: string; waitMs: number }[] = [];
    await uploadArchive(d.target, body, { onRetry: (attempt, reason, waitMs) => retries.push({ attempt, reason, waitMs }) });
    assert.is(proxy.cuts(), 1);
    assert.is(retries.length, 1, JSON.stringify(retries));
    assert.is(retries[0]!.attempt, 1);
    assert.is(retries[0]!.waitMs, 1000);
    assert.match(retries[0]!.reason, /upload to http:\/\/127\.0\.0\.1:\d+\/api\/uploads\/[^?]+ failed/);
    assert.not.match(retries[0]!.reason, /sig=|expires=/, 'the signature is never printed');
    await completesAndServes(api, d, 'after-a-cut');
  } finally {
    await proxy.close();
  }
});

cut('after the body: the answer is lost, the next attempt is refused as used, and that counts as stored (complete checks it)', async () => {
  const api = await tp.newUser();
  const proxy = await cuttingProxy(tp.url, 'answer');
  try {
    const body = await archive('answer-lost');
    const d = await deployThrough(api, 'cut-answer', body, proxy.origin);
    let retries = 0;
    await uploadArchive(d.target, body, { onRetry: () => retries++ });
    assert.is(proxy.cuts(), 1);
    assert.is(retries, 1);
    await completesAndServes(api, d, 'answer-lost');
  } finally {
    await proxy.close();
  }
});

cut('a used upload URL with no cut before is refused at once (409), not taken as stored', async () => {
  const api = await tp.newUser();
  const body = await archive('once');
  const d = await deployThrough(api, 'used-once', body, tp.url);
  await uploadArchive(d.target, body);
  let retries = 0;
  const err = await uploadArchive(d.target, body, { onRetry: () => retries++ }).then(() => null, (e: unknown) => e);
  assert.instance(err, CliError);
  assert.match((err as Error).message, /refused \(409/);
  assert.is(retries, 0);
});

// A stand-in for S3 answering 503 SlowDown or 403: a fault the embedded s3rver cannot be made to
// produce. It answers from a script, one answer per request, and counts them.
async function scriptedStorage(answers: { status: number; headers?: Record<string, string>; body?: string }[]) {
  let requests = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const a = answers[Math.min(requests++, answers.length - 1)]!;
      res.writeHead(a.status, { 'content-type': 'application/xml', ...a.headers });
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    target: { method: 'PUT', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/bucket/key?X-Amz-Signature=secret`, headers: {} },
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const slowDown = { status: 503, headers: { 'retry-after': '0' }, body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>' };
const answers = suite('storage answers');

answers('503 with Retry-After: tried again after the wait it asks; the next 200 ends it', async () => {
  const s = await scriptedStorage([slowDown, { status: 200 }]);
  try {
    const waits: number[] = [];
    await uploadArchive(s.target, Buffer.from('archive'), { onRetry: (_a, reason, waitMs) => (waits.push(waitMs), assert.match(reason, /503: Please reduce your request rate/)) });
    assert.equal(waits, [0]);
    assert.is(s.requests(), 2);
  } finally {
    await s.close();
  }
});

answers(`5xx every time: ${UPLOAD_ATTEMPTS} attempts, then the last answer with the count; the signature is never printed`, async () => {
  const s = await scriptedStorage([slowDown]);
  try {
    const err = await uploadArchive(s.target, Buffer.from('archive')).then(() => null, (e: unknown) => e);
    assert.instance(err, CliError);
    assert.is((err as Error).message, `the upload to storage was refused (503: Please reduce your request rate.) (after ${UPLOAD_ATTEMPTS} attempts)`);
    assert.is(s.requests(), UPLOAD_ATTEMPTS);
  } finally {
    await s.close();
  }
});

answers('a 4xx (an expired or wrong signature) is not tried again', async () => {
  const s = await scriptedStorage([{ status: 403, body: '<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>' }, { status: 200 }]);
  try {
    const err = await uploadArchive(s.target, Buffer.from('archive')).then(() => null, (e: unknown) => e);
    assert.instance(err, CliError);
    assert.is((err as Error).message, 'the upload to storage was refused (403: Request has expired)');
    assert.is(s.requests(), 1);
  } finally {
    await s.close();
  }
});

answers('nothing listening (a wrong address) is not tried again', async () => {
  const s = await scriptedStorage([{ status: 200 }]);
  const target = s.target;
  await s.close();
  const err = await uploadArchive(target, Buffer.from('archive')).then(() => null, (e: unknown) => e);
  assert.instance(err, CliError);
  assert.match((err as Error).message, /cannot reach the storage at http:\/\/127\.0\.0\.1:\d+ to upload/);
});

answers.after(() => tp.close());
cut.run();
answers.run();
