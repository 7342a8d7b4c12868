// Reading a request body as text, bounded, straight from Node's request when the API runs on
// @hono/node-server: no web Request, no web stream and no body-limit wrapper around it (the invoke
// route is the hot path). Elsewhere (app.request in tests) the web way, with the same bound.
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { errors } from '../../shared/errors.ts';

const EMPTY = Buffer.alloc(0);

/** The bound of a JSON request body (the multipart deploy, uploads and invocations set their own). */
export const JSON_BODY_LIMIT = 1024 * 1024;

/** The 413 of a JSON body over JSON_BODY_LIMIT (`declared`: the Content-Length it came with). */
export const jsonBodyTooLarge = (declared?: number) => errors.tooLarge(JSON_BODY_LIMIT, declared, 'request body');

export async function readBodyText(c: Context, limit: number, tooLarge: () => Error): Promise<string> {
  return (await readBodyBytes(c, limit, tooLarge)).toString('utf8');
}

export async function readBodyBytes(c: Context, limit: number, tooLarge: () => Error): Promise<Buffer> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming || incoming.readableEnded) {
    const bytes = Buffer.from(await c.req.arrayBuffer());
    if (bytes.length > limit) throw tooLarge();
    return bytes;
  }
  return readIncoming(incoming, limit, tooLarge);
}

/** The body of a Node request, bounded: over `limit`, the rest is drained unread and `tooLarge()` thrown. */
export function readIncoming(incoming: IncomingMessage, limit: number, tooLarge: () => Error): Promise<Buffer> {
  // no Content-Length and not chunked: HTTP/1.1 says there is no body (a GET, most often)
  if (incoming.headers['content-length'] === undefined && incoming.headers['transfer-encoding'] === undefined) {
    incoming.resume();
    return Promise.resolve(EMPTY);
  }
  // The whole declared body already buffered (a small body comes in the request's first packet):
  // taken at once, not through the stream's events, a few ticks later. resume() lets the stream
  // end as usual.
  const declared = Number(incoming.headers['content-length']);
  if (declared > 0 && declared <= limit && incoming.headers['transfer-encoding'] === undefined && incoming.readableLength === declared) {
    const whole = incoming.read(declared) as Buffer | null;
    if (whole?.length === declared) {
      incoming.resume();
      return Promise.resolve(whole);
    }
    if (whole) incoming.unshift(whole);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // stop keeping it, let the rest drain: the 413 goes out with Connection: close
        incoming.off('data', onData);
        incoming.resume();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    incoming.on('data', onData);
    incoming.once('end', () => {
      if (size <= limit) resolve(Buffer.concat(chunks, size));
    });
    incoming.once('error', reject);
  });
}
