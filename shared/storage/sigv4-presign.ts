// AWS Signature Version 4 for presigned URLs (query-string authentication), with node:crypto.
// The SDK's presigner built the same URL in ~0.8 ms a deploy (its middleware stack, a request
// serializer, async credential and region providers), a large share of a deploy request; this is
// the algorithm alone: a canonical request, its sha256, and an HMAC chain whose key changes once a
// day (cached). It produces, byte for byte, what @aws-sdk/s3-request-presigner produced for the
// same request and clock (tests/unit/sigv4-presign.test.ts compares them, and checks AWS's own
// worked example).
// https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
import { createHash, createHmac } from 'node:crypto';

export interface SigV4Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface PresignRequest {
  method: string;
  /** scheme, host (with its port, if any) and path, the path's segments already URI-encoded */
  url: string;
  /** query parameters besides the signature's own (signed too) */
  query?: Record<string, string>;
  /** headers the client must send with exactly these values: signed (and `host`, always) */
  signedHeaders?: Record<string, string>;
  expiresInSeconds: number;
  region: string;
  service: string;
  credentials: SigV4Credentials;
  now?: Date;
}

/** The longest a SigV4 presigned URL may live (S3 refuses longer ones). */
export const SIGV4_MAX_EXPIRES_SECONDS = 7 * 24 * 3600;

/** RFC 3986 encoding, as SigV4 wants it: encodeURIComponent leaves !'()* alone. */
export function uriEscape(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** An S3 key as a URL path: each segment encoded, its slashes kept. */
export function uriEscapePath(key: string): string {
  return key.split('/').map(uriEscape).join('/');
}

const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/** The signing key of one day, region and service: four HMACs, the same all day. */
const signingKeys = new Map<string, Buffer>();
function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const id = `${date}\n${region}\n${service}\n${secret}`;
  let key = signingKeys.get(id);
  if (!key) {
    // yesterday's keys (and those of secrets no longer used) go: a handful at most
    if (signingKeys.size >= 16) signingKeys.clear();
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
    signingKeys.set(id, key);
  }
  return key;
}

/** `20130524T000000Z`: the ISO time without separators or milliseconds. */
function amzDate(d: Date): string {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

export function presignV4(req: PresignRequest): string {
  if (!Number.isInteger(req.expiresInSeconds) || req.expiresInSeconds < 1 || req.expiresInSeconds > SIGV4_MAX_EXPIRES_SECONDS) {
    throw new Error(`a presigned URL lives 1 to ${SIGV4_MAX_EXPIRES_SECONDS} seconds, not ${req.expiresInSeconds}`);
  }
  // the path as given: new URL() would resolve dot segments, which are part of an S3 key
  const parts = /^(https?:\/\/[^/?#]+)(\/[^?#]*)?$/i.exec(req.url);
  if (!parts) throw new Error('a presigned URL is made from scheme://host/path, without query or fragment');
  const origin = new URL(parts[1]!);
  const path = parts[2] ?? '/';
  const datetime = amzDate(req.now ?? new Date());
  const date = datetime.slice(0, 8);
  const scope = `${date}/${req.region}/${req.service}/aws4_request`;

  const headers: Record<string, string> = { host: origin.host };
  for (const [name, value] of Object.entries(req.signedHeaders ?? {})) headers[name.toLowerCase()] = value.trim().replace(/\s+/g, ' ');
  const headerNames = Object.keys(headers).sort();
  const signedHeaderList = headerNames.join(';');

  const query: Record<string, string> = {
    ...req.query,
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
    'X-Amz-Credential': `${req.credentials.accessKeyId}/${scope}`,
    'X-Amz-Date': datetime,
    'X-Amz-Expires': String(req.expiresInSeconds),
    'X-Amz-SignedHeaders': signedHeaderList,
  };
  const canonicalQuery = queryString(query);

  const canonicalRequest = [
    req.method.toUpperCase(),
    path,
    canonicalQuery,
    ...headerNames.map((n) => `${n}:${headers[n]}`),
    '',
    signedHeaderList,
    // the body is not part of the signature (a signed header, such as a checksum, binds it instead)
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', datetime, scope, createHash('sha256').update(canonicalRequest, 'utf8').digest('hex')].join('\n');
  const signature = createHmac('sha256', signingKey(req.credentials.secretAccessKey, date, req.region, req.service))
    .update(stringToSign, 'utf8')
    .digest('hex');
  return `${origin.origin}${path}?${queryString({ ...query, 'X-Amz-Signature': signature })}`;
}

/** Parameters encoded and sorted by their encoded names (the canonical order, and the SDK's). */
function queryString(query: Record<string, string>): string {
  return Object.keys(query)
    .map((k) => [uriEscape(k), uriEscape(query[k]!)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}
