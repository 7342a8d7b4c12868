// Function endpoints: every function answers plain HTTP on its own URL.
//   ANY /fn/{handle}/{name}[@v{N}]/{path}?{query}
//   ANY {name}--{handle}.{FUNCTIONS_DOMAIN}/{path}?{query}   (when FUNCTIONS_DOMAIN is set)
// The request is checked (access mode, body size), forwarded to a warm instance of the version it
// addresses, and the instance's answer streams back as it is produced. Errors of the platform (as
// opposed to answers of the function) are JSON {"error": {code, message}} with X-ContainerPub-Error;
// every answer carries X-Request-Id, and X-Function-Version once a version is chosen.
// Written straight to Node's response (no web Response in between): it is the hot path, and a
// stream must reach the caller chunk by chunk.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { type EndpointAddress, parseEndpointHost, parseEndpointPath } from '../../shared/domain/endpoint-address.ts';
import type { FunctionKeyCache } from '../../shared/domain/function-keys.ts';
import type { Invoker } from '../../shared/domain/invoke.ts';
import type { LiveRoute } from '../../shared/domain/live-routes.ts';
import type { TokenCache } from '../../shared/domain/tokens.ts';
import { AppError, errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import { ChannelError, type InstanceChannel } from '../../shared/runtime/pool.ts';
import type { ForwardedRequest } from '../../shared/runtime/instance.ts';
import { errorAnswer, type App } from '../http/app.ts';
import { readIncoming } from '../http/body.ts';

export interface EndpointDeps {
  invoker: Invoker;
  tokens: TokenCache;
  keys: FunctionKeyCache;
}

/** Headers that describe one hop, never forwarded either way (RFC 9110 §7.6.1), and framing we redo. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
  'expect',
]);
const PROTOCOL_PREFIX = 'x-containerpub-';
/** A protocol failure's body ({error, logs}) is small; more is not from the bootstrap. */
const FAILURE_BODY_LIMIT = 256 * 1024;

export function register(app: App, p: Platform, deps: EndpointDeps): void {
  const domain = p.config.endpoints.functionsDomain;
  if (domain) {
    // before every other route: on a function's host, every path is the function's
    app.use('*', async (c, next) => {
      const host = (c.req.header('host') ?? '').toLowerCase().replace(/:\d+$/, '');
      if (!host.endsWith(`.${domain}`)) return next();
      const named = parseEndpointHost(host, domain);
      const target = (c.env as { incoming?: IncomingMessage }).incoming?.url ?? c.req.path;
      const [path] = splitQuery(target);
      const address = named ? { ...named, path, prefix: '' } : null;
      return serveEndpoint(c, p, deps, address);
    });
  }
  app.all('/fn/*', (c) => {
    const target = (c.env as { incoming?: IncomingMessage }).incoming?.url ?? c.req.path;
    return serveEndpoint(c, p, deps, parseEndpointPath(splitQuery(target)[0]));
  });
}

function splitQuery(target: string): [string, string] {
  const q = target.indexOf('?');
  return q === -1 ? [target, ''] : [target.slice(0, q), target.slice(q)];
}

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  /** set once a version is chosen */
  version?: number;
}

async function serveEndpoint(c: Context, p: Platform, deps: EndpointDeps, address: EndpointAddress | null): Promise<Response> {
  const env = c.env as { incoming?: IncomingMessage; outgoing?: ServerResponse } | undefined;
  if (!env?.incoming || !env.outgoing) throw errors.unavailable('function endpoints are served over HTTP by the API server only');
  const ex: Exchange = { req: env.incoming, res: env.outgoing, requestId: randomUUID() };
  try {
    if (!address) throw errors.functionNotFound();
    await handle(p, deps, ex, address);
  } catch (err) {
    if (!ex.res.headersSent) sendError(p, ex, err);
    else ex.res.destroy();
  }
  return RESPONSE_ALREADY_SENT;
}

function sendError(p: Platform, ex: Exchange, err: unknown): void {
  const a = errorAnswer(p, err, { method: ex.req.method ?? '', path: ex.req.url ?? '' });
  const body = JSON.stringify(a.body);
  ex.res.writeHead(a.status, {
    ...a.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': ex.requestId,
    ...(ex.version !== undefined ? { 'x-function-version': String(ex.version) } : {}),
  });
  ex.res.end(ex.req.method === 'HEAD' ? undefined : body);
}

// ---------------------------------------------------------------------------------- access

/** What the caller proved: the owner's token, a key of this function, or nothing. */
type Caller = 'owner' | 'key' | 'other-user' | 'anonymous';

function bearerOf(req: IncomingMessage): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return match ? match[1]! : null;
}

/** A platform credential (an API token or a function key) is consumed here, never shown to the function. */
function isPlatformCredential(secret: string | null): boolean {
  return secret !== null && (secret.startsWith('cp_') || secret.startsWith('fk_'));
}

async function identify(deps: EndpointDeps, req: IncomingMessage, route: LiveRoute): Promise<Caller> {
  const headerKey = req.headers['x-function-key'];
  const key = typeof headerKey === 'string' ? headerKey.trim() : null;
  const bearer = bearerOf(req);
  if (key && (await deps.keys.opens(key, route.functionId))) return 'key';
  if (bearer?.startsWith('fk_') && (await deps.keys.opens(bearer, route.functionId))) return 'key';
  if (bearer?.startsWith('cp_')) {
    const identity = await deps.tokens.authenticate(bearer);
    if (identity) return identity.userId === route.userId ? 'owner' : 'other-user';
  }
  return 'anonymous';
}

/** Whether the caller may call this function (and pin a version): else the error to answer. */
function checkAccess(route: LiveRoute, caller: Caller, pinned: boolean): AppError | null {
  if (caller === 'owner') return null;
  if (route.access === 'private') {
    // another user's private function looks like no function at all, as everywhere in the API
    return caller === 'other-user' ? errors.functionNotFound() : errors.unauthorized("this function is private: call it with its owner's bearer token");
  }
  if (caller === 'key') return null;
  if (route.access === 'key') {
    return errors.unauthorized('this function needs a function key: send it as "Authorization: Bearer fk_…" or "X-Function-Key: fk_…"');
  }
  if (pinned) return errors.unauthorized("calling a pinned version needs the owner's bearer token or a function key");
  return null;
}

// ---------------------------------------------------------------------------------- one request

async function handle(p: Platform, deps: EndpointDeps, ex: Exchange, address: EndpointAddress): Promise<void> {
  const { invoker } = deps;
  const { req } = ex;
  const route = await invoker.routes.byAddress(address.handle, address.name);
  if (!route) throw errors.functionNotFound();
  const caller = await identify(deps, req, route);
  const refused = checkAccess(route, caller, address.version !== undefined);
  if (refused) throw refused;

  const max = p.config.endpoints.maxRequestBytes;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) throw errors.tooLarge(max, declared, 'request body');
  const target = await invoker.targetOf(route, address.version);
  ex.version = target.version;
  const body = await readIncoming(req, max, () => errors.tooLarge(max, undefined, 'request body'));

  const [, query] = splitQuery(req.url ?? '');
  const forwarded: ForwardedRequest = {
    method: req.method ?? 'GET',
    path: `${address.path}${query}`,
    headers: forwardHeaders(p, req, address, ex.requestId),
    body,
  };
  const out = await invoker.exchange(target, ex.requestId, (channel, signal) => answer(channel, signal, forwarded, ex));
  const record = {
    ...target,
    requestId: ex.requestId,
    method: forwarded.method,
    path: address.path,
    durationMs: out.durationMs,
  };
  if (!out.ok) {
    const failure = invoker.failure(target, ex.requestId, out);
    invoker.record({ ...record, outcome: out.kind, logs: out.logs, error: out.message, status: ex.res.headersSent ? ex.res.statusCode : failure.status });
    throw failure;
  }
  const r = out.value;
  if (r.kind === 'failed') {
    const failure = r.code === 'invalid_json' ? new AppError('invalid_json', r.message) : invoker.failure(target, ex.requestId, { kind: 'error', message: r.message });
    invoker.record({ ...record, outcome: 'error', logs: r.logs, error: r.message, status: failure.status });
    throw failure;
  }
  const streamError = r.kind === 'answered' ? r.streamError : null;
  const outcome = r.kind === 'client-gone' ? 'aborted' : streamError ? 'error' : 'ok';
  invoker.record({ ...record, outcome, logs: r.logs, error: streamError, status: r.status });
}

/** The caller's headers as the function gets them (see the bootstrap's serveHttp). */
function forwardHeaders(p: Platform, req: IncomingMessage, address: EndpointAddress, requestId: string): string[] {
  const trustProxy = p.config.auth.trustProxy;
  const named = new Set<string>();
  for (const token of (req.headers.connection ?? '').split(',')) if (token.trim()) named.add(token.trim().toLowerCase());
  const out: string[] = [];
  const raw = req.rawHeaders;
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  let forwardedHost: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    if (HOP_BY_HOP.has(name) || named.has(name) || name.startsWith(PROTOCOL_PREFIX) || name === 'x-function-key') continue;
    if (name === 'authorization' && isPlatformCredential(bearerOf(req))) continue;
    if (name === 'x-forwarded-for' || name === 'x-forwarded-proto' || name === 'x-forwarded-host' || name === 'x-forwarded-prefix') {
      // only a proxy we trust (TRUST_PROXY=on) may tell the function where a request came from
      if (!trustProxy) continue;
      if (name === 'x-forwarded-for') forwardedFor = forwardedFor ? `${forwardedFor}, ${value}` : value;
      if (name === 'x-forwarded-proto') forwardedProto ??= value;
      if (name === 'x-forwarded-host') forwardedHost ??= value;
      continue;
    }
    out.push(name, value);
  }
  const peer = req.socket.remoteAddress ?? '';
  const publicUrl = p.config.uploads.publicUrl;
  out.push(
    'x-forwarded-for',
    forwardedFor ? `${forwardedFor}, ${peer}` : peer,
    'x-forwarded-proto',
    forwardedProto ?? (publicUrl?.startsWith('https:') ? 'https' : 'http'),
    'x-forwarded-host',
    forwardedHost ?? req.headers.host ?? 'localhost',
    'x-containerpub-request-id',
    requestId,
  );
  if (address.prefix) out.push('x-forwarded-prefix', address.prefix);
  return out;
}

type Answer =
  /** the function answered (its status); the body went through, or broke off (streamError) */
  | { kind: 'answered'; status: number; logs: string; streamError: string | null }
  /** the caller went away before the answer was through */
  | { kind: 'client-gone'; status: number; logs: string }
  /** the function failed rather than answered (it threw, or the event was not JSON) */
  | { kind: 'failed'; code: string; message: string; logs: string };

function decodeLogs(value: string | string[] | undefined): string {
  return typeof value === 'string' ? Buffer.from(value, 'base64').toString('utf8') : '';
}

/**
 * One exchange with the instance: forward the request, stream its answer to the caller. Settles
 * once the answer is through (or the caller left); rejects with a ChannelError when the instance's
 * side breaks (it died, or the timeout aborted it), which the pool reports as a crash or a timeout.
 */
async function answer(channel: InstanceChannel, signal: AbortSignal, request: ForwardedRequest, ex: Exchange): Promise<Answer> {
  const { res } = ex;
  // The caller may leave at any time: that ends the exchange (the instance sees its request
  // closed), and is not the instance's fault.
  const left = new AbortController();
  const onLeft = () => {
    if (!res.writableFinished) left.abort();
  };
  res.once('close', onLeft);
  if (res.destroyed) left.abort();
  try {
    return await exchangeWith(channel, AbortSignal.any([signal, left.signal]), request, ex);
  } catch (err) {
    if (left.signal.aborted && !signal.aborted) return { kind: 'client-gone', status: res.headersSent ? res.statusCode : 499, logs: '' };
    throw err;
  } finally {
    res.off('close', onLeft);
  }
}

async function exchangeWith(channel: InstanceChannel, signal: AbortSignal, request: ForwardedRequest, ex: Exchange): Promise<Answer> {
  const { res } = ex;
  const upstream = await channel.forward(request, signal);
  const failedWith = upstream.headers['x-containerpub-error'];
  if (typeof failedWith === 'string') {
    const text = await readLimited(upstream, FAILURE_BODY_LIMIT, signal);
    let parsed: { error?: unknown; logs?: unknown } = {};
    try {
      parsed = JSON.parse(text);
    } catch {
      // a custom image's own words: keep them as the message
    }
    const message = typeof parsed.error === 'string' ? parsed.error : text.slice(0, 500) || 'the function failed';
    return { kind: 'failed', code: failedWith, message, logs: typeof parsed.logs === 'string' ? parsed.logs : '' };
  }
  const status = upstream.statusCode ?? 502;
  const head: string[] = [];
  const raw = upstream.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) && name !== 'content-length') continue;
    if (name.startsWith(PROTOCOL_PREFIX) || name === 'x-request-id' || name === 'x-function-version') continue;
    head.push(raw[i]!, raw[i + 1]!);
  }
  const declared = upstream.headers['x-containerpub-content-length'];
  if (typeof declared === 'string' && /^\d+$/.test(declared) && upstream.headers['content-length'] === undefined) head.push('Content-Length', declared);
  head.push('X-Function-Version', String(ex.version), 'X-Request-Id', ex.requestId);
  res.writeHead(status, upstream.statusMessage, head);
  const headerLogs = decodeLogs(upstream.headers['x-containerpub-logs']);

  return new Promise<Answer>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => {
      upstream.destroy();
      settle(() => reject(new ChannelError('aborted')));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    upstream.pipe(res, { end: false });
    upstream.once('end', () => {
      const logs = headerLogs || decodeLogs(upstream.trailers['x-containerpub-logs']);
      const streamError = upstream.trailers['x-containerpub-error'];
      if (streamError) {
        // the body broke off: the caller must not take what it got for the whole answer
        res.destroy();
        settle(() => resolve({ kind: 'answered', status, logs, streamError: `the response stream failed (${streamError})` }));
        return;
      }
      res.end();
      settle(() => resolve({ kind: 'answered', status, logs, streamError: null }));
    });
    upstream.once('close', () => {
      if (!upstream.complete) settle(() => reject(new ChannelError("the instance's answer broke off")));
    });
    upstream.on('error', () => {});
  });
}

function readLimited(stream: IncomingMessage, limit: number, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onAbort = () => stream.destroy(new ChannelError('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
    });
    stream.once('end', () => {
      signal.removeEventListener('abort', onAbort);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    stream.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(err instanceof ChannelError ? err : new ChannelError(err.message));
    });
  });
}
