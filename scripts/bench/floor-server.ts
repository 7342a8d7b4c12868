// The floor of a warm invocation, in its own process (as the platform's server is): the same
// handler module served by a bare node:http server on 127.0.0.1, doing what the bootstrap does for
// one invocation (read the body, parse the JSON event, call the handler, answer JSON) and nothing
// the platform adds (no auth, no routing, no pool, no socket hop, no record).
// Usage: node --import tsx floor-server.ts <handler module>; prints one JSON line {url}.
import http from 'node:http';
import { pathToFileURL } from 'node:url';

type Handler = (event: unknown, context: Record<string, unknown>) => unknown;

const modulePath = process.argv[2];
if (!modulePath) throw new Error('usage: floor-server.ts <handler module>');
const mod = (await import(pathToFileURL(modulePath).href)) as { default?: Handler };
const handler = mod.default;
if (typeof handler !== 'function') throw new Error(`${modulePath} has no default export to call`);

function send(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    void (async () => {
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        const event: unknown = text.trim() === '' ? null : JSON.parse(text);
        const result = await handler(event, { requestId: String(req.headers['x-request-id'] ?? '') });
        send(res, 200, JSON.stringify({ result: result ?? null }));
      } catch (err) {
        send(res, 500, JSON.stringify({ error: String(err) }));
      }
    })();
  });
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${address.port}` }) + '\n');
});

// The parent going away (a crashed bench) must not leave it behind.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
