// One HTTP exchange of the CLI with node:http / node:https, not fetch. Node 20 loads and compiles
// fetch's implementation (undici) on its first call: ~0.16 s of CPU, which was half of every
// command that sends a request (0.33 s against 0.17 s for `--help`, measured on this project's
// VM), and the CLI sends one or a few. The upload (upload.ts) was already on node:http.
import http from 'node:http';
import https from 'node:https';

export interface Answer {
  status: number;
  statusText: string;
  ok: boolean;
  headers: http.IncomingHttpHeaders;
  /** the body as it arrives: read whole with readText, or iterated (an event stream) */
  body: AsyncIterable<Buffer>;
}

export interface ExchangeOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** aborts the exchange, the body's reading included: its reason is the error thrown */
  signal?: AbortSignal;
}

/**
 * Sends one request and resolves once the answer's head arrived. A failure to connect is node's
 * own error (its `code`: ECONNREFUSED…); an abort rejects, or ends the body's reading, with the
 * signal's reason.
 */
export function exchange(url: URL, opts: ExchangeOptions = {}): Promise<Answer> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const transport = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
  if (!transport) return Promise.reject(new Error(`unsupported protocol ${url.protocol} (http: or https:)`));
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
  return new Promise<Answer>((resolve, reject) => {
    const req = transport.request(url, { method: opts.method ?? 'GET', headers });
    let answer: http.IncomingMessage | undefined;
    const onAbort = () => {
      // the socket goes with it: a body being read ends with the same error
      answer?.destroy(signal!.reason);
      req.destroy(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    req.once('close', () => signal?.removeEventListener('abort', onAbort));
    // (an error after the answer's head, a cut or an abort, reaches whoever reads the body)
    req.on('error', reject);
    req.once('response', (res) => {
      answer = res;
      // read or not, the body's error must not go unhandled: its reader sees it all the same
      res.on('error', () => {});
      const status = res.statusCode ?? 0;
      resolve({ status, statusText: res.statusMessage ?? '', ok: status >= 200 && status < 300, headers: res.headers, body: res });
    });
    req.end(opts.body);
  });
}

/** The whole body as text (UTF-8). */
export async function readText(answer: Answer): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of answer.body) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}
