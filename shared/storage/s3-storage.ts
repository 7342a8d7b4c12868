// Object storage for function archives, over any S3-compatible server.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';

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

function client(endpoint: string, s: S3Settings): S3Client {
  return new S3Client({
    endpoint,
    region: s.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
    // The SDK's defaults send streamed bodies aws-chunked (s3rver stores the chunk framing inside
    // the object) and put a checksum of an empty body into presigned URLs.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
}

export class S3Storage {
  readonly bucket: string;
  private readonly s3: S3Client;
  /** Signs URLs with the host clients use to reach S3, which may differ from ours. */
  private readonly signer: S3Client;

  constructor(readonly settings: S3Settings) {
    this.bucket = settings.bucket;
    this.s3 = client(settings.endpoint, settings);
    this.signer = settings.publicEndpoint ? client(settings.publicEndpoint, settings) : this.s3;
  }

  async ensureBucket(): Promise<void> {
    try {
      await this.s3.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.s3.send(new CreateBucketCommand({ Bucket: this.bucket }));
    }
  }

  async ping(): Promise<void> {
    await this.s3.send(new HeadBucketCommand({ Bucket: this.bucket }));
  }

  async presignPut(key: string, opts: { expiresInSeconds: number; contentLength?: number }): Promise<PresignedUpload> {
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      Key: key,
      ContentType: ARCHIVE_CONTENT_TYPE,
      ...(opts.contentLength === undefined ? {} : { ContentLength: opts.contentLength }),
    });
    const url = await getSignedUrl(this.signer, command, { expiresIn: opts.expiresInSeconds });
    return {
      method: 'PUT',
      url,
      headers: { 'Content-Type': ARCHIVE_CONTENT_TYPE },
      expiresAt: new Date(Date.now() + opts.expiresInSeconds * 1000).toISOString(),
    };
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

  async getStream(key: string): Promise<Readable> {
    const out = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    return out.Body as Readable;
  }

  /** Streams the object once to hash it; never holds it in memory. */
  async sha256(key: string): Promise<{ sha256: string; size: number }> {
    const body = await this.getStream(key);
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of body) {
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

  async copy(fromKey: string, toKey: string, opts: { storageClass?: string } = {}): Promise<void> {
    await this.s3.send(
      new CopyObjectCommand({
        Bucket: this.bucket,
        Key: toKey,
        CopySource: `${this.bucket}/${fromKey.split('/').map(encodeURIComponent).join('/')}`,
        ContentType: ARCHIVE_CONTENT_TYPE,
        // Without REPLACE the storage class of an in-place copy is ignored.
        MetadataDirective: 'REPLACE',
        ...(opts.storageClass ? { StorageClass: opts.storageClass as StorageClass } : {}),
      }),
    );
  }

  destroy(): void {
    this.s3.destroy();
    if (this.signer !== this.s3) this.signer.destroy();
  }
}
