// The hand-rolled SigV4 presigner (shared/storage/sigv4-presign.ts) against AWS's worked example,
// against the SDK's presigner for the same requests and clock (what S3Storage.presignPut used to
// call, kept here as the reference), and against a real S3 server (s3rver: it checks the access
// key, the parameters and the expiry, not the signature, which the comparisons vouch for).
// (imported first for its side effect: it silences the SDK's Node-version notice)
import '../../shared/storage/s3-storage.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startEmbeddedS3 } from '../../shared/storage/embedded-s3.ts';
import { ARCHIVE_CONTENT_TYPE, S3Storage, type S3Settings } from '../../shared/storage/s3-storage.ts';
import { presignV4, uriEscape } from '../../shared/storage/sigv4-presign.ts';

test('AWS worked example: GET examplebucket/test.txt, 24 hours, 2013-05-24', () => {
  // https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
  const url = presignV4({
    method: 'GET',
    url: 'https://examplebucket.s3.amazonaws.com/test.txt',
    expiresInSeconds: 86400,
    region: 'us-east-1',
    service: 's3',
    credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    now: new Date('2013-05-24T00:00:00Z'),
  });
  assert.is(
    url,
    'https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256' +
      '&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request' +
      '&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400' +
      '&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404&X-Amz-SignedHeaders=host',
  );
});

/** What S3Storage.presignPut did before: the SDK's presigner, with the same options. */
async function sdkPresignPut(s: S3Settings, key: string, opts: { expiresInSeconds: number; contentLength: number; sha256: string; now: Date }) {
  const signer = new S3Client({
    endpoint: s.publicEndpoint || s.endpoint,
    region: s.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    return await getSignedUrl(
      signer,
      new PutObjectCommand({
        Bucket: s.bucket,
        Key: key,
        ContentType: ARCHIVE_CONTENT_TYPE,
        ContentLength: opts.contentLength,
        ChecksumSHA256: Buffer.from(opts.sha256, 'hex').toString('base64'),
      }),
      {
        expiresIn: opts.expiresInSeconds,
        signingDate: opts.now,
        unhoistableHeaders: new Set(['x-amz-checksum-sha256']),
        signableHeaders: new Set(['content-length', 'content-type', 'x-amz-checksum-sha256']),
      },
    );
  } finally {
    signer.destroy();
  }
}

const base: S3Settings = { endpoint: 'http://127.0.0.1:9000', bucket: 'containerpub', region: 'us-east-1', accessKeyId: 'AKID', secretAccessKey: 'SECRET' };

test('presignPut makes exactly the SDK presigner\'s URL, for every shape of endpoint, key, region and clock', async () => {
  const settings: S3Settings[] = [
    base,
    { ...base, endpoint: 'https://s3.eu-west-3.amazonaws.com', region: 'eu-west-3', accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    { ...base, endpoint: 'http://minio:9000', publicEndpoint: 'https://files.example.com' },
    { ...base, endpoint: 'http://minio:9000', publicEndpoint: 'http://files.example.com:80/' },
    { ...base, bucket: 'my.bucket-2', secretAccessKey: 'a+b/c=d' },
  ];
  const keys = [
    'functions/6f1c2b9e-0000-4000-8000-000000000001/1.tar.gz',
    'functions/x/v 2 (copy).tar.gz',
    "odd/!'()*~._-/ünïcødé/a+b=c&d;e:f@g$h,i",
    'double//slash/trailing/',
  ];
  const times = [new Date('2026-12-03T04:05:06.789Z'), new Date('2030-01-01T00:00:00Z'), new Date('2026-02-28T23:59:59.999Z')];
  let compared = 0;
  for (const s of settings) {
    const storage = new S3Storage(s);
    try {
      for (const key of keys) {
        for (const now of times) {
          for (const [expiresInSeconds, contentLength] of [[900, 1234], [1, 1], [604800, 104857600]] as const) {
            const sha256 = Buffer.from(`${key}${contentLength}`).toString('hex').padEnd(64, '0').slice(0, 64);
            const opts = { expiresInSeconds, contentLength, sha256, now };
            const ours = storage.presignPut(key, opts);
            assert.is(ours.url, await sdkPresignPut(s, key, opts), `${s.publicEndpoint ?? s.endpoint} ${key} ${now.toISOString()}`);
            assert.equal(ours.headers, {
              'Content-Type': ARCHIVE_CONTENT_TYPE,
              'Content-Length': String(contentLength),
              'x-amz-checksum-sha256': Buffer.from(sha256, 'hex').toString('base64'),
            });
            compared++;
          }
        }
      }
    } finally {
      storage.destroy();
    }
  }
  assert.is(compared, settings.length * keys.length * times.length * 3);
});

test('the signing key follows the day, the region and the secret (no stale cached key)', async () => {
  const at = (iso: string, s: S3Settings) => new S3Storage(s).presignPut('k', { expiresInSeconds: 60, contentLength: 1, sha256: '0'.repeat(64), now: new Date(iso) }).url;
  for (const [iso, s] of [
    ['2026-12-03T23:59:59Z', base],
    ['2026-12-04T00:00:00Z', base],
    ['2026-12-04T00:00:00Z', { ...base, region: 'eu-central-1' }],
    ['2026-12-04T00:00:00Z', { ...base, secretAccessKey: 'OTHER' }],
  ] as const) {
    const now = new Date(iso);
    assert.is(at(iso, s), await sdkPresignPut(s, 'k', { expiresInSeconds: 60, contentLength: 1, sha256: '0'.repeat(64), now }));
  }
});

test('an expiry outside 1 s to 7 days is refused, as S3 would', () => {
  const storage = new S3Storage(base);
  for (const expiresInSeconds of [0, 604801, 1.5]) {
    assert.throws(() => storage.presignPut('k', { expiresInSeconds, contentLength: 1, sha256: '0'.repeat(64) }), /presigned URL lives/);
  }
});

test('uriEscape encodes as RFC 3986 wants (what encodeURIComponent leaves: !\'()*)', () => {
  assert.is(uriEscape("a b!'()*~._-/+é"), 'a%20b%21%27%28%29%2A~._-%2F%2B%C3%A9');
});

test('s3rver takes a PUT through the URL with its headers; refuses an expired URL and an unknown key', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigv4-s3rver-'));
  const s3 = await startEmbeddedS3({ directory: dir, bucket: 'containerpub' });
  const storage = new S3Storage({ ...base, endpoint: s3.endpoint, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });
  const stranger = new S3Storage({ ...base, endpoint: s3.endpoint, accessKeyId: 'NOBODY', secretAccessKey: 'S3RVER' });
  try {
    const body = Buffer.from('an archive, as far as S3 knows');
    const { createHash } = await import('node:crypto');
    const sha256 = createHash('sha256').update(body).digest('hex');
    const key = 'functions/odd name (1)/v1.tar.gz';
    const put = (url: string, headers: Record<string, string>) => fetch(url, { method: 'PUT', headers, body });

    const ok = storage.presignPut(key, { expiresInSeconds: 60, contentLength: body.length, sha256 });
    const res = await put(ok.url, ok.headers);
    assert.is(res.status, 200, await res.text());
    assert.is((await storage.head(key))?.size, body.length);
    assert.equal(await storage.digest(key), { sha256, size: body.length });

    const expired = storage.presignPut('functions/late', { expiresInSeconds: 60, contentLength: body.length, sha256, now: new Date(Date.now() - 3600_000) });
    const late = await put(expired.url, expired.headers);
    assert.is(late.status, 403);
    assert.match(await late.text(), 'Request has expired');
    assert.is(await storage.head('functions/late'), null);

    const unknown = stranger.presignPut('functions/stranger', { expiresInSeconds: 60, contentLength: body.length, sha256 });
    const refused = await put(unknown.url, unknown.headers);
    assert.is(refused.status, 403);
    assert.match(await refused.text(), 'InvalidAccessKeyId');
  } finally {
    storage.destroy();
    stranger.destroy();
    await s3.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
