// Object storage for function archives, over any S3-compatible server.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { Transform, type Readable } from 'node:stream';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { isDependencyOutage } from '../outage.ts';
import { InfrastructureError } from '../runtime/types.ts';
import { presignV4, uriEscape, uriEscapePath } from './sigv4-presign.ts';

// Node 20 is supported by the SDK versions we pin; its notice about future releases is printed on
// every start otherwise. An operator can still turn it back on by setting the variable to false.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3Settings {
  endpoint: string;
  publicEndpoint?: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface PresignedUpload {
  method: 'PUT';
  url: string;
  headers: Record<string, string>;
  expiresAt: string;
}

export interface ObjectInfo {
  size: number;
  storageClass?: string;
}

export const ARCHIVE_CONTENT_TYPE = 'application/gzip';

/** The most keys one DeleteObjects request may name. */
export const DELETE_OBJECTS_MAX = 1000;

function client(endpoint: string, s: S3Settings): S3Client {
  return new S3Client({
    endpoint,
    region: s.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    // The SDK's defaults send streamed bodies aws-chunked (s3rver stores the chunk framing inside
    // the object).
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

/**
 * A call that failed for want of S3 (no answer, a cut connection, a 5xx) becomes
 * InfrastructureError('s3'), which the build queue waits out without spending an attempt; what
 * S3 answered about the request itself (404, 403) passes through unchanged.
 */
function s3Failure(err: unknown, what: string): unknown {
  if (err instanceof InfrastructureError || isNotFound(err)) return err;
  const e = err as { $metadata?: { httpStatusCode?: number }; message?: string } | null;
  const status = e?.$metadata?.httpStatusCode;
  const unanswered = status === undefined && (e?.$metadata !== undefined || isDependencyOutage(err));
  if (unanswered || (status !== undefined && status >= 500)) {
    return new InfrastructureError('s3', `S3 ${what}: ${e?.message || (status ? `HTTP ${status}` : String(err))}`, { cause: err });
  }
  return err;
}

export interface S3CallOptions {
  /** gives up the call (and a download under way) with the signal's reason */
  signal?: AbortSignal;
}

/** How long a bucket that answered is taken to be reachable (checkReachable). */
const REACHABLE_MEMO_MS = 1000;
/** The key the reachability probe asks for: never written. */
const REACHABILITY_PROBE_KEY = '.containerpub/reachability-probe';

export class S3Storage {
  readonly bucket: string;
  private readonly s3: S3Client;
  private probing: Promise<void> | null = null;
  private reachableUntil = 0;
  /** 0: no limit */
  private readonly ioTimeoutMs: number;

  /**
   * `ioTimeoutMs` (BUILD_IO_TIMEOUT_MS) bounds a download's and a copy's wait for S3 to answer,
   * and a download's wait for its next chunk: a store that hangs must not hold a build forever.
   */
  constructor(readonly settings: S3Settings, opts: { ioTimeoutMs?: number } = {}) {
    this.ioTimeoutMs = opts.ioTimeoutMs ?? 0;
    this.bucket = settings.bucket;
    this.s3 = client(settings.endpoint, settings);
  }

  async ensureBucket(): Promise<void> {
    try {
      await this.s3.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.s3.send(new CreateBucketCommand({ Bucket: this.bucket }));
    }
  }

  /**
   * Throws unless the bucket answers: a GET of a key that does not exist, answered NoSuchKey (not
   * NoSuchBucket, and not AccessDenied: the same ListBucket right HeadBucket needed). Not
   * HeadBucket: the embedded store (s3rver) answers that by listing the whole bucket,
   * synchronously, on the API's event loop: a stall of 100 ms and more once it holds a few thousand
   * archives, at every readiness check and every second of deploys.
   */
  async ping(abortSignal?: AbortSignal): Promise<void> {
    try {
      const found = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: REACHABILITY_PROBE_KEY }), { abortSignal });
      (found.Body as Readable | undefined)?.destroy();
    } catch (err) {
      if ((err as { name?: string })?.name !== 'NoSuchKey') throw err;
    }
  }

  /**
   * A PUT URL bound to one body: content-length and x-amz-checksum-sha256 are signed headers
   * (kept out of the query string, where S3 would not compare them with the body), so S3 or MinIO
   * refuse any other length or content. The client must send every header in `headers`, with
   * exactly these values. Path-style, on the host clients use to reach S3 (which may differ from
   * ours); signed by sigv4-presign.ts (the SDK's presigner cost more than the rest of a deploy).
   */
  presignPut(key: string, opts: { expiresInSeconds: number; contentLength: number; sha256: string; now?: Date }): PresignedUpload {
    const checksum = Buffer.from(opts.sha256, 'hex').toString('base64');
    const endpoint = (this.settings.publicEndpoint || this.settings.endpoint).replace(/\/+$/, '');
    const headers = {
      'Content-Type': ARCHIVE_CONTENT_TYPE,
      'Content-Length': String(opts.contentLength),
      'x-amz-checksum-sha256': checksum,
    };
    const url = presignV4({
      method: 'PUT',
      url: `${endpoint}/${uriEscape(this.bucket)}/${uriEscapePath(key)}`,
      // what the SDK's presigner added (the payload hash is UNSIGNED-PAYLOAD either way): kept,
      // so the URL is the one it made
      query: { 'X-Amz-Content-Sha256': 'UNSIGNED-PAYLOAD', 'x-id': 'PutObject' },
      signedHeaders: headers,
      expiresInSeconds: opts.expiresInSeconds,
      region: this.settings.region,
      service: 's3',
      credentials: { accessKeyId: this.settings.accessKeyId, secretAccessKey: this.settings.secretAccessKey },
      now: opts.now,
    });
    return {
      method: 'PUT',
      url,
      headers,
      expiresAt: new Date((opts.now?.getTime() ?? Date.now()) + opts.expiresInSeconds * 1000).toISOString(),
    };
  }

  /**
   * Throws unless the bucket answered within `timeoutMs`. A success is remembered for a second, and
   * callers arriving while a check is under way share it, so a burst of deploys costs one request
   * (not one each, which under load made the store look down); a failure is not remembered, so
   * recovery is seen at once. A store that is down refuses the connection at once; the timeout is
   * for one that hangs, and is generous because a busy host (or the embedded store, which shares the
   * API's event loop) can take seconds to answer a burst: 2 s refused deploys on a loaded CI host.
   *
   * Under steady traffic the memory is renewed in the background in its last quarter, so no
   * request waits for the check: every deploy of the moment waited for it once a second (at 16
   * clients, 6 ms on average per deploy). It still lapses a second after the last success.
   */
  async checkReachable(timeoutMs = 5000): Promise<void> {
    const now = Date.now();
    if (now < this.reachableUntil) {
      if (now > this.reachableUntil - REACHABLE_MEMO_MS / 4 && !this.probing) this.probeBucket(timeoutMs).catch(() => {});
      return;
    }
    await this.probeBucket(timeoutMs);
  }

  private probeBucket(timeoutMs: number): Promise<void> {
    return (this.probing ??= this.ping(AbortSignal.timeout(timeoutMs))
      .then(() => {
        this.reachableUntil = Date.now() + REACHABLE_MEMO_MS;
      })
      .finally(() => (this.probing = null)));
  }

  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const out = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: Number(out.ContentLength ?? 0), storageClass: out.StorageClass };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /**
   * The object as a stream. S3 must start answering within ioTimeoutMs, and send each next chunk
   * within ioTimeoutMs (while the reader keeps up: a reader that lags is not S3's stall); either
   * failure, and a connection cut mid-way, errors the stream with InfrastructureError('s3').
   */
  async getStream(key: string, opts: S3CallOptions = {}): Promise<Readable> {
    return (await this.getObject(key, opts)).body;
  }

  /** getStream, with the object's size as S3 announced it (before a byte of it is read). */
  async getObject(key: string, opts: S3CallOptions = {}): Promise<{ body: Readable; size: number }> {
    const what = `GET ${key}`;
    const request = new AbortController();
    const onAbort = () => request.abort(opts.signal!.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const out = await this.bounded(what, request, opts, (abortSignal) =>
      this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal }),
    ).catch((err) => {
      opts.signal?.removeEventListener('abort', onAbort);
      throw err;
    });
    const body = out.Body as Readable;

    const timeoutMs = this.ioTimeoutMs;
    let stall: NodeJS.Timeout | undefined;
    const arm = () => {
      if (!timeoutMs) return;
      clearTimeout(stall);
      stall = setTimeout(() => {
        // data waiting for the reader: the reader lags, not S3
        if (watched.readableLength > 0) return arm();
        watched.destroy(new InfrastructureError('s3', `S3 ${what}: the download stalled (no data for ${timeoutMs} ms)`));
      }, timeoutMs);
    };
    const watched = new Transform({
      transform(chunk: Buffer, _enc, done) {
        arm();
        done(null, chunk);
      },
    });
    body.on('error', (err) => watched.destroy((opts.signal?.aborted ? opts.signal.reason : s3Failure(err, what)) as Error));
    watched.on('close', () => {
      clearTimeout(stall);
      opts.signal?.removeEventListener('abort', onAbort);
      body.destroy();
    });
    request.signal.addEventListener('abort', () => watched.destroy(request.signal.reason as Error), { once: true });
    arm();
    return { body: body.pipe(watched), size: Number(out.ContentLength ?? 0) };
  }

  /**
   * Runs one S3 call under `request`: aborted by the caller's signal, or after ioTimeoutMs without
   * an answer; failures for want of S3 become InfrastructureError('s3').
   */
  private async bounded<T>(what: string, request: AbortController, opts: S3CallOptions, send: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    if (opts.signal?.aborted) throw opts.signal.reason;
    const timeoutMs = this.ioTimeoutMs;
    const timer = timeoutMs
      ? setTimeout(() => request.abort(new InfrastructureError('s3', `S3 ${what}: no answer within ${timeoutMs} ms`)), timeoutMs)
      : undefined;
    try {
      return await send(request.signal);
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (request.signal.aborted) throw request.signal.reason;
      throw s3Failure(err, what);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The object's size and sha256, in one GET that streams it through the hash (never held in
   * memory); null when there is no such object. An object over `maxBytes` by the size S3 announces
   * is not read at all: its sha256 is null.
   */
  async digest(key: string, maxBytes = Number.POSITIVE_INFINITY): Promise<{ sha256: string | null; size: number } | null> {
    let object: { body: Readable; size: number };
    try {
      object = await this.getObject(key);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    if (object.size > maxBytes) {
      object.body.destroy();
      return { sha256: null, size: object.size };
    }
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of object.body) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { sha256: hash.digest('hex'), size };
  }

  async putFile(key: string, filePath: string): Promise<void> {
    const { size } = await fs.promises.stat(filePath);
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: fs.createReadStream(filePath),
        ContentLength: size,
        ContentType: ARCHIVE_CONTENT_TYPE,
      }),
    );
  }

  /** Streams `body` (exactly `size` bytes) into the object; abort `abortSignal` to give up mid-way. */
  async putStream(key: string, body: Readable, size: number, abortSignal?: AbortSignal): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: size, ContentType: ARCHIVE_CONTENT_TYPE }),
      { abortSignal },
    );
  }

  async putBuffer(key: string, body: Buffer): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: ARCHIVE_CONTENT_TYPE }),
    );
  }

  /** Idempotent: deleting a missing object is not an error. */
  async delete(key: string): Promise<void> {
    try {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /**
   * Deletes `keys` with DeleteObjects, up to 1,000 a request (S3's limit), one request at a time.
   * Idempotent like delete(): a missing key is deleted. Returns the keys S3 refused, each with its
   * reason (S3 answers per key); a request that fails as a whole throws, and the keys of the
   * requests after it are not tried.
   */
  async deleteMany(keys: readonly string[]): Promise<Map<string, string>> {
    const refused = new Map<string, string>();
    const unique = [...new Set(keys)];
    for (let i = 0; i < unique.length; i += DELETE_OBJECTS_MAX) {
      const batch = unique.slice(i, i + DELETE_OBJECTS_MAX);
      let out;
      try {
        out = await this.s3.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        );
      } catch (err) {
        throw s3Failure(err, `DeleteObjects of ${batch.length} keys`);
      }
      for (const e of out.Errors ?? []) {
        if (e.Key !== undefined && e.Code !== 'NoSuchKey') refused.set(e.Key, `${e.Code ?? 'error'}: ${e.Message ?? ''}`.trim());
      }
    }
    return refused;
  }

  async copy(fromKey: string, toKey: string, opts: { storageClass?: string } & S3CallOptions = {}): Promise<void> {
    const request = new AbortController();
    const onAbort = () => request.abort(opts.signal!.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    await this.bounded(`copy ${fromKey} to ${toKey}`, request, opts, (abortSignal) => this.s3.send(
      new CopyObjectCommand({
        Bucket: this.bucket,
        Key: toKey,
        CopySource: `${this.bucket}/${fromKey.split('/').map(encodeURIComponent).join('/')}`,
        ContentType: ARCHIVE_CONTENT_TYPE,
        // Without REPLACE the storage class of an in-place copy is ignored.
        MetadataDirective: 'REPLACE',
        ...(opts.storageClass ? { StorageClass: opts.storageClass as StorageClass } : {}),
      }),
      { abortSignal },
    )).finally(() => opts.signal?.removeEventListener('abort', onAbort));
  }

  /** copy(), or false when `fromKey` does not exist (no HEAD first: S3 answers the copy with NoSuchKey). */
  async copyIfPresent(fromKey: string, toKey: string, opts: { storageClass?: string } & S3CallOptions = {}): Promise<boolean> {
    try {
      await this.copy(fromKey, toKey, opts);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  destroy(): void {
    this.s3.destroy();
  }
}
