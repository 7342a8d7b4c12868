// The PUT to a presigned URL: exactly the headers the API signed plus a Content-Length, written in
// chunks so progress can be reported. Uses node:http(s) rather than fetch, which cannot report how
// much of a request body has been sent.
import http from 'node:http';
import https from 'node:https';
import { networkCode } from './api-client.ts';
import { CliError } from './errors.ts';

const CHUNK = 64 * 1024;
const UPLOAD_TIMEOUT_MS = 120_000;

export interface PresignedTarget {
  method: string;
  url: string;
  headers: Record<string, string>;
}

/** The URL without its query: presigned signatures are credentials and are never printed. */
function shown(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** Attempts at one upload: the first and up to two more after a transient failure. */
export const UPLOAD_ATTEMPTS = 3;
/** The longest wait between attempts, whatever Retry-After asks. */
const MAX_RETRY_WAIT_MS = 10_000;
/** Answers worth another attempt: storage (or the API relaying to it) failing or overloaded, not refusing the upload. */
const TRANSIENT_STATUSES = new Set([500, 502, 503, 504]);
/** A connection cut on the way: the next attempt gets a new one. (Refused or unresolvable: a wrong address, not retried.) */
const CUT_CODES = new Set(['ECONNRESET', 'EPIPE']);

/** What is known of a failed attempt. */
class AttemptFailed extends CliError {
  constructor(
    message: string,
    readonly transient: boolean,
    /** the answer's Retry-After, in ms */
    readonly retryAfterMs: number | null = null,
    /** the connection was cut: the body may have been stored all the same */
    readonly outcomeUnknown = false,
    readonly status: number | null = null,
    readonly apiCode: string | null = null,
  ) {
    super(message);
  }
}

export interface UploadOptions {
  onProgress?: (sent: number, total: number) => void;
  /** before each further attempt: which one failed, why, and how long until the next */
  onRetry?: (attempt: number, reason: string, waitMs: number) => void;
}

/**
 * PUTs the archive, again after a transient failure (a 5xx answer, a connection cut on the way),
 * up to UPLOAD_ATTEMPTS times, waiting as the answer's Retry-After asks (at most 10 s) or 1 s, then
 * 2 s. A presigned URL takes as many PUTs as its lifetime allows; the API's own upload URL (S3
 * embedded) gives the upload back when one is refused or cut, so the next attempt may claim it. A
 * request, a signature or a size that storage refuses (4xx) is not tried again.
 */
export async function uploadArchive(target: PresignedTarget, body: Buffer, opts: UploadOptions = {}): Promise<void> {
  let cutBefore = false;
  for (let attempt = 1; ; attempt++) {
    try {
      return await putOnce(target, body, opts.onProgress);
    } catch (err) {
      if (!(err instanceof AttemptFailed)) throw err;
      // A connection cut after the whole body went: the API's own upload URL may have stored it and
      // then refuses another PUT as used. Completing the deploy checks what was stored.
      if (cutBefore && err.status === 409 && err.apiCode === 'upload_used') return;
      if (!err.transient || attempt >= UPLOAD_ATTEMPTS) {
        throw attempt > 1 ? new CliError(`${err.message} (after ${attempt} attempts)`) : new CliError(err.message);
      }
      cutBefore ||= err.outcomeUnknown;
      const waitMs = Math.min(MAX_RETRY_WAIT_MS, err.retryAfterMs ?? 1000 * 2 ** (attempt - 1));
      opts.onRetry?.(attempt, err.message, waitMs);
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
}

function putOnce(target: PresignedTarget, body: Buffer, onProgress?: (sent: number, total: number) => void): Promise<void> {
  const url = new URL(target.url);
  const transport = url.protocol === 'https:' ? https : http;
  const headers = { ...target.headers, 'Content-Length': String(body.length) };
  return new Promise<void>((resolve, reject) => {
    const req = transport.request(url, { method: target.method || 'PUT', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(cut(url, err)));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve();
        const text = Buffer.concat(chunks).toString('utf8');
        // S3 answers in XML: <Error><Code>…</Code><Message>…</Message></Error>; the API's own
        // upload URL (embedded S3) in JSON: {"error": {"code", "message"}}
        const json = jsonError(text);
        const message =
          /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ??
          /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ??
          json?.message ??
          text.slice(0, 200);
        const retryAfter = Number(res.headers['retry-after']);
        reject(
          new AttemptFailed(
            `the upload to storage was refused (${status}${message ? `: ${message.trim()}` : ''})`,
            TRANSIENT_STATUSES.has(status),
            Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter * 1000 : null,
            false,
            status,
            json?.code ?? null,
          ),
        );
      });
    });
    req.setTimeout(UPLOAD_TIMEOUT_MS, () => req.destroy(new CliError(`upload to ${shown(url)} failed: no progress for ${UPLOAD_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => {
      if (err instanceof CliError) return reject(err);
      const code = networkCode(err);
      if (code && !CUT_CODES.has(code)) {
        return reject(new CliError(`cannot reach the storage at ${url.origin} to upload (the API's S3_PUBLIC_ENDPOINT may be wrong)`));
      }
      reject(cut(url, err));
    });
    void (async () => {
      let sent = 0;
      for (let offset = 0; offset < body.length; offset += CHUNK) {
        const chunk = body.subarray(offset, offset + CHUNK);
        const flushed = req.write(chunk);
        sent += chunk.length;
        onProgress?.(sent, body.length);
        if (!flushed) {
          await new Promise<void>((r) => {
            const go = () => {
              req.off('drain', go);
              req.off('close', go);
              r();
            };
            req.on('drain', go);
            req.on('close', go);
          });
        }
        if (req.destroyed) return;
      }
      req.end();
    })();
  });
}

/** A connection that broke during the upload (reset, or closed before the answer): worth another attempt. */
function cut(url: URL, err: Error): AttemptFailed {
  return new AttemptFailed(`upload to ${shown(url)} failed: ${err.message}`, true, null, true);
}

function jsonError(text: string): { code: string | null; message: string | undefined } | undefined {
  try {
    const error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (!error) return undefined;
    return { code: typeof error.code === 'string' ? error.code : null, message: typeof error.message === 'string' ? error.message : undefined };
  } catch {
    return undefined;
  }
}
