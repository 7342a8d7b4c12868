// The floor of a function endpoint, in its own process (as the platform's server is): the same
// Web-standard `fetch` handler module served by a bare node:http server on 127.0.0.1, with the
// minimal faithful conversion any Node host of such a handler does (IncomingMessage → Request →
// handler → Response → ServerResponse): method, URL, headers (hop-by-hop ones dropped), the body as a
// stream when there is one; the status, the headers (repeated Set-Cookie kept apart) and the body
// streamed back as it is produced. Nothing the platform adds: no auth, no routing, no pool, no
// socket hop, no record.
// Usage: node --import tsx http-floor-server.ts <handler module>; prints one JSON line {url}.
import http from 'node:http';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';

type FetchHandler = (request: Request, context: Record<string, unknown>) => Response | Promise<Response>;

const modulePath = process.argv[2];
if (!modulePath) throw new Error('usage: http-floor-server.ts <handler module>');
const mod = (await import(pathToFileURL(modulePath).href)) as { default?: { fetch?: FetchHandler }; fetch?: FetchHandler };
const target = typeof mod.default?.fetch === 'function' ? mod.default : mod;
const handler = typeof target.fetch === 'function' ? target.fetch.bind(target) : null;
if (!handler) throw new Error(`${modulePath} exports no fetch handler (export default { fetch } or export function fetch)`);

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function toRequest(req: http.IncomingMessage, origin: string): Request {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) headers.append(raw[i]!, raw[i + 1]!);
  }
  const method = req.method ?? 'GET';
  const hasBody = method !== 'GET' && method !== 'HEAD';
  return new Request(origin + (req.url ?? '/'), {
    method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as ReadableStream<Uint8Array>) : undefined,
    // required by undici for a streamed request body
    duplex: 'half',
  } as RequestInit);
}

async function send(res: http.ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) res.write(chunk);
  res.end();
}

let origin = '';
const server = http.createServer((req, res) => {
  void (async () => {
    try {
      const response = await handler(toRequest(req, origin), { requestId: String(req.headers['x-request-id'] ?? '') });
      await send(res, response);
    } catch (err) {
      if (res.headersSent) return void res.destroy();
      const body = JSON.stringify({ error: String(err) });
      res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }
  })();
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  origin = `http://127.0.0.1:${address.port}`;
  process.stdout.write(JSON.stringify({ url: origin }) + '\n');
});

// The parent going away (a crashed bench) must not leave it behind.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
