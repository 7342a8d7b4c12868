// Where a client PUTs a new version's archive. Two issuers behind one interface:
// - S3: a presigned URL to the store itself, bound by signature to the archive's length and sha256.
// - the API: used while the S3 server is embedded. The embedded server listens on loopback only
//   (it checks no signatures: exposing it would let anyone write anything), so the API hands out
//   URLs to itself, HMAC-signed and bound to the deployment, its declared size and sha256 and an
//   expiry, and streams what arrives into the store (shared/domain/uploads.ts, storeRelayedUpload).
// Clients see the same shape either way: PUT `url` with every header in `headers`.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ARCHIVE_CONTENT_TYPE, type PresignedUpload, type S3Storage } from './s3-storage.ts';

export interface UploadTarget {
  deploymentId: string;
  key: string;
  sizeBytes: number;
  /** hex */
  sha256: string;
  expiresAt: Date;
}

export interface UploadUrlIssuer {
  /** `apiBaseUrl`: the API as the requesting client reached it */
  issue(target: UploadTarget, ctx: { apiBaseUrl: string }): Promise<PresignedUpload>;
}

export class S3UploadUrls implements UploadUrlIssuer {
  constructor(private readonly storage: S3Storage) {}

  async issue(t: UploadTarget): Promise<PresignedUpload> {
    // S3 counts X-Amz-Expires from X-Amz-Date, which has whole seconds: signed at the second's
    // start, the URL expires exactly at `expiresAt` (counted from the current millisecond, it
    // expired up to a second before what the row and the response say)
    const signedAt = Math.floor(Date.now() / 1000);
    const expiresInSeconds = Math.max(1, Math.floor(t.expiresAt.getTime() / 1000) - signedAt);
    const signed = this.storage.presignPut(t.key, {
      expiresInSeconds,
      contentLength: t.sizeBytes,
      sha256: t.sha256,
      now: new Date(signedAt * 1000),
    });
    return { ...signed, expiresAt: t.expiresAt.toISOString() };
  }
}

/** The path API upload URLs are served under (api/routes/uploads.ts). */
export const API_UPLOAD_PATH = '/api/uploads';

export class ApiUploadUrls implements UploadUrlIssuer {
  constructor(
    private readonly secret: Buffer,
    /** PUBLIC_URL: wins over the address the client used (a proxy in front may rewrite it) */
    private readonly publicUrl?: string,
  ) {}

  private sign(deploymentId: string, sizeBytes: number, sha256: string, expires: number): string {
    return createHmac('sha256', this.secret)
      .update(`containerpub-upload\n${deploymentId}\n${sizeBytes}\n${sha256.toLowerCase()}\n${expires}`)
      .digest('base64url');
  }

  async issue(t: UploadTarget, ctx: { apiBaseUrl: string }): Promise<PresignedUpload> {
    const expires = Math.floor(t.expiresAt.getTime() / 1000);
    const url = new URL(`${this.publicUrl ?? ctx.apiBaseUrl}${API_UPLOAD_PATH}/${t.deploymentId}`);
    url.searchParams.set('expires', String(expires));
    url.searchParams.set('sig', this.sign(t.deploymentId, t.sizeBytes, t.sha256, expires));
    return {
      method: 'PUT',
      url: url.toString(),
      headers: { 'Content-Type': ARCHIVE_CONTENT_TYPE, 'Content-Length': String(t.sizeBytes) },
      expiresAt: new Date(expires * 1000).toISOString(),
    };
  }

  /** Whether `sig` was made by this API for exactly this deployment, size, sha256 and expiry. */
  verify(deploymentId: string, sizeBytes: number, sha256: string, expires: number, sig: string): boolean {
    const expected = Buffer.from(this.sign(deploymentId, sizeBytes, sha256, expires));
    const given = Buffer.from(sig);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/**
 * UPLOAD_SIGNING_SECRET, else a key generated on first start into DATA_DIR (mode 0600), so URLs
 * handed out survive a restart.
 */
export function loadUploadSigningSecret(dataDir: string, configured?: string): Buffer {
  if (configured) return Buffer.from(configured, 'utf8');
  const file = path.join(dataDir, 'upload-signing.key');
  fs.mkdirSync(dataDir, { recursive: true });
  try {
    fs.writeFileSync(file, randomBytes(32).toString('hex'), { flag: 'wx', mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'utf8');
}
