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

export async function uploadArchive(
  target: PresignedTarget,
  body: Buffer,
  onProgress?: (sent: number, total: number) => void,
): Promise<void> {
  const url = new URL(target.url);
  const transport = url.protocol === 'https:' ? https : http;
  const headers = { ...target.headers, 'Content-Length': String(body.length) };
  await new Promise<void>((resolve, reject) => {
    const req = transport.request(url, { method: target.method || 'PUT', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve();
        const text = Buffer.concat(chunks).toString('utf8');
        // S3 answers in XML: <Error><Code>…</Code><Message>…</Message></Error>; the API's own
        // upload URL (embedded S3) in JSON: {"error": {"code", "message"}}
        const message =
          /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ??
          /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ??
          jsonErrorMessage(text) ??
          text.slice(0, 200);
        reject(new CliError(`the upload to storage was refused (${status}${message ? `: ${message.trim()}` : ''})`));
      });
    });
    req.setTimeout(UPLOAD_TIMEOUT_MS, () => req.destroy(new Error(`no progress for ${UPLOAD_TIMEOUT_MS / 1000} s`)));
    req.on('error', (err) => {
      if (err instanceof CliError) return reject(err);
      if (networkCode(err)) {
        return reject(new CliError(`cannot reach the storage at ${url.origin} to upload (the API's S3_PUBLIC_ENDPOINT may be wrong)`));
      }
      reject(new CliError(`upload to ${shown(url)} failed: ${err.message}`));
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

function jsonErrorMessage(text: string): string | undefined {
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    return typeof message === 'string' ? message : undefined;
  } catch {
    return undefined;
  }
}
