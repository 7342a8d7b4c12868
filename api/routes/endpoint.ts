// Function endpoints: every function answers plain HTTP on its own URL.
//   ANY /fn/{handle}/{name}[@v{N}|@{tag}]/{path}?{query}
//   ANY {name}--{handle}.{FUNCTIONS_DOMAIN}/{path}?{query}   (when FUNCTIONS_DOMAIN is set)
// The request is checked (access mode, body size), forwarded to a warm instance of the version it
// addresses, and the instance's answer streams back as it is produced. Errors of the platform (as
// opposed to answers of the function) are JSON {"error": {code, message}} with X-ContainerPub-Error;
// every answer carries X-Request-Id, and X-Function-Version once a version is chosen.
// Written straight to Node's response (no web Response in between): it is the hot path, and a
// stream must reach the caller chunk by chunk.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ENDPOINT_PREFIX, type EndpointAddress, parseEndpointHost, parseEndpointPath } from '../../shared/domain/endpoint-address.ts';
import type { FunctionKeyCache } from '../../shared/domain/function-keys.ts';
import type { Invoker } from '../../shared/domain/invoke.ts';
import type { LiveRoute } from '../../shared/domain/live-routes.ts';
import {
  needsTrafficKey,
  newTrafficKey,
  normalizeTrafficKey,
  TRAFFIC_COOKIE,
  TRAFFIC_KEY_HEADER,
  trafficKeyFromCookie,
} from '../../shared/domain/traffic-choice.ts';
import type { TokenCache } from '../../shared/domain/tokens.ts';
import { AppError, errors } from '../../shared/errors.ts';
import type { Platform } from '../../shared/platform.ts';
import { ChannelError, type InstanceChannel } from '../../shared/runtime/pool.ts';
import type { ForwardedRequest } from '../../shared/runtime/instance.ts';
import { errorAnswer, type App } from '../http/app.ts';
import { readIncoming } from '../http/body.ts';
import { observeEndpointRequest } from '../../shared/observability/http.ts';

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

/** A Node request listener for endpoint requests: true when it took the request. */
export type EndpointListener = (req: IncomingMessage, res: ServerResponse) => boolean;

const listeners = new WeakMap<App, EndpointListener>();

/**
 * The endpoint listener of an app, for the server to call ahead of Hono: endpoint requests are the
 * hot path, and Hono's routing and web Request adaptation would be work for nothing there.
 */
export function endpointListenerOf(app: App): EndpointListener | undefined {
  return listeners.get(app);
}

/** Endpoint requests are served by the listener serveApi calls ahead of Hono (see endpointListenerOf). */
export function register(app: App, p: Platform, deps: EndpointDeps): void {
  const domain = p.config.endpoints.functionsDomain;
  /** The function a request addresses: null when it is not an endpoint request at all. */
  const addressOf = (req: IncomingMessage): { address: EndpointAddress | null } | null => {
    const target = req.url ?? '/';
    if (domain) {
      const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
      if (host.endsWith(`.${domain}`)) {
        // on a function's host name, every path is the function's
        const named = parseEndpointHost(host, domain);
        return { address: named ? { ...named, path: splitQuery(target)[0], prefix: '' } : null };
      }
    }
    if (!target.startsWith(ENDPOINT_PREFIX)) return null;
    return { address: parseEndpointPath(splitQuery(target)[0]) };
  };
  listeners.set(app, (req, res) => {
    const found = addressOf(req);
    if (!found) return false;
    observeEndpointRequest(p.metrics, req, res, (requestId) => serveEndpoint(p, deps, req, res, found.address, requestId));
    return true;
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
  /** a Set-Cookie carrying the traffic key the platform chose for this caller (sticky split) */
  trafficCookie?: string;
}

async function serveEndpoint(p: Platform, deps: EndpointDeps, req: IncomingMessage, res: ServerResponse, address: EndpointAddress | null, requestId: string): Promise<void> {
  const ex: Exchange = { req, res, requestId };
  try {
    if (!address) throw errors.functionNotFound();
    await handle(p, deps, ex, address);
  } catch (err) {
    if (!ex.res.headersSent) sendError(p, ex, err);
    else ex.res.destroy();
  }
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
    ...(ex.trafficCookie ? { 'set-cookie': ex.trafficCookie } : {}),
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
  const target = await invoker.targetOf(route, { version: address.version, tag: address.tag, trafficKey: trafficKeyOf(ex, route, address) });
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

/**
 * The caller's traffic key for a sticky split: X-Traffic-Key, else the cp_traffic cookie, else one
 * made up now and set as that cookie, so a browser keeps its version from its first request on.
 */
function trafficKeyOf(ex: Exchange, route: LiveRoute, address: EndpointAddress): string | null {
  if (address.version !== undefined || address.tag !== undefined || !needsTrafficKey(route)) return null;
  const key = normalizeTrafficKey(ex.req.headers[TRAFFIC_KEY_HEADER]) ?? trafficKeyFromCookie(ex.req.headers.cookie);
  if (key) return key;
  const made = newTrafficKey();
  const scope = address.prefix ? `${ENDPOINT_PREFIX}${address.handle}/${address.name}` : '/';
  ex.trafficCookie = `${TRAFFIC_COOKIE}=${made}; Path=${scope}; Max-Age=${7 * 24 * 3600}; HttpOnly; SameSite=Lax`;
  return made;
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

/** Answers with a known length up to this size are sent in one write, rather than piped. */
const WHOLE_ANSWER_BYTES = 256 * 1024;

/**
 * One exchange with the instance: forward the request, stream its answer to the caller. Settles
 * once the answer is through, or the caller left (which ends the exchange: the instance sees its
 * request closed, and is not blamed). Rejects with a ChannelError when the instance's side breaks
 * (it died, or the timeout aborted it): the pool reports that as a crash or a timeout.
 */
function answer(channel: InstanceChannel, signal: AbortSignal, request: ForwardedRequest, ex: Exchange): Promise<Answer> {
  const { res } = ex;
  return new Promise<Answer>((resolve, reject) => {
    let settled = false;
    let upstream: IncomingMessage | null = null;
    const sent = channel.send(request);
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      res.off('close', onLeft);
      fn();
    };
    const onAbort = () => {
      sent.destroy();
      upstream?.destroy();
      finish(() => reject(new ChannelError('aborted')));
    };
    const onLeft = () => {
      if (res.writableFinished) return;
      sent.destroy();
      upstream?.destroy();
      finish(() => resolve({ kind: 'client-gone', status: res.headersSent ? res.statusCode : 499, logs: '' }));
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    res.once('close', onLeft);
    if (res.destroyed) return onLeft();
    sent.on('error', (err) => finish(() => reject(new ChannelError(err.message))));
    sent.on('response', (up: IncomingMessage) => {
      upstream = up;
      up.on('error', () => {});
      up.once('close', () => {
        if (!up.complete) finish(() => reject(new ChannelError("the instance's answer broke off")));
      });
      const failedWith = up.headers['x-containerpub-error'];
      if (typeof failedWith === 'string') {
        collect(up, FAILURE_BODY_LIMIT, (bytes) => finish(() => resolve(failure(failedWith, bytes.toString('utf8')))));
        return;
      }
      const status = up.statusCode ?? 502;
      const head = answerHead(up, ex);
      const headerLogs = decodeLogs(up.headers['x-containerpub-logs']);
      const length = Number(up.headers['content-length'] ?? NaN);
      if (length <= WHOLE_ANSWER_BYTES) {
        // the common answer: all of it in one write to the caller
        collect(up, WHOLE_ANSWER_BYTES, (bytes) => {
          res.writeHead(status, up.statusMessage, head);
          res.end(bytes);
          finish(() => resolve({ kind: 'answered', status, logs: headerLogs, streamError: null }));
        });
        return;
      }
      res.writeHead(status, up.statusMessage, head);
      up.pipe(res, { end: false });
      up.once('end', () => {
        const logs = headerLogs || decodeLogs(up.trailers['x-containerpub-logs']);
        const streamError = up.trailers['x-containerpub-error'];
        if (streamError) {
          // the body broke off: the caller must not take what it got for the whole answer
          res.destroy();
          finish(() => resolve({ kind: 'answered', status, logs, streamError: `the response stream failed (${streamError})` }));
          return;
        }
        res.end();
        finish(() => resolve({ kind: 'answered', status, logs, streamError: null }));
      });
    });
  });
}

/** The instance's answer head as the caller gets it. */
function answerHead(up: IncomingMessage, ex: Exchange): string[] {
  const head: string[] = [];
  const raw = up.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) && name !== 'content-length') continue;
    if (name.startsWith(PROTOCOL_PREFIX) || name === 'x-request-id' || name === 'x-function-version') continue;
    head.push(raw[i]!, raw[i + 1]!);
  }
  const declared = up.headers['x-containerpub-content-length'];
  if (typeof declared === 'string' && /^\d+$/.test(declared) && up.headers['content-length'] === undefined) head.push('Content-Length', declared);
  head.push('X-Function-Version', String(ex.version), 'X-Request-Id', ex.requestId);
  if (ex.trafficCookie) head.push('Set-Cookie', ex.trafficCookie);
  return head;
}

/** A failure the instance reported (X-ContainerPub-Error), from its {error, logs} body. */
function failure(code: string, text: string): Answer {
  let parsed: { error?: unknown; logs?: unknown } = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    // a custom image's own words: keep them as the message
  }
  const message = typeof parsed.error === 'string' ? parsed.error : text.slice(0, 500) || 'the function failed';
  return { kind: 'failed', code, message, logs: typeof parsed.logs === 'string' ? parsed.logs : '' };
}

/** Reads a body (keeping at most `limit` bytes); the caller's finish handles breaks and aborts. */
function collect(stream: IncomingMessage, limit: number, done: (bytes: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  stream.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  });
  stream.once('end', () => {
    done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
  });
}

