// Reading a request body as text, bounded, straight from Node's request when the API runs on
// @hono/node-server: no web Request, no web stream and no body-limit wrapper around it (the invoke
// route is the hot path). Elsewhere (app.request in tests) the web way, with the same bound.
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';

export async function readBodyText(c: Context, limit: number, tooLarge: () => Error): Promise<string> {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (!incoming || incoming.readableEnded) {
    const text = await c.req.text();
    if (Buffer.byteLength(text) > limit) throw tooLarge();
    return text;
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
      if (size <= limit) resolve(Buffer.concat(chunks, size).toString('utf8'));
    });
    incoming.once('error', reject);
  });
}
