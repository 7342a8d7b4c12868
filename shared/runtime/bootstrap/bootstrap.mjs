// ContainerPub bootstrap: a long-lived instance of a Node function, speaking the instance protocol
// (shared/runtime/protocol.ts). It serves HTTP on the Unix socket named by CONTAINERPUB_SOCKET and
// loads the handler module once, when first asked whether it is ready:
//   GET  /ready   200 once the module is loaded (answered when it is: the platform's readiness check)
//   POST /invoke  the JSON event as the body, the request id in X-ContainerPub-Request-Id;
//                 answers 200 {"ok":true,"result":…,"logs":"…"} or {"ok":false,"error":"…","logs":"…"}
//   ANY  /http/…  a request to the function's endpoint, as the platform forwards it (see serveHttp)
// Two handler styles, told apart by the module's exports:
//   HTTP   `export default { fetch(request, context) }` or `export function fetch(request, context)`:
//          a Web Request in, a Response out (streamed as it is produced)
//   event  `export default async (event, context)` (or a `handler` export): JSON in, JSON out
// Module-level state lives as long as the instance: many invocations, as on Lambda.
// Everything the function prints goes to stderr (the instance's log) and, when printed while an
// invocation runs, to that invocation's own logs too (AsyncLocalStorage keeps them apart when
// several run at once). An uncaught exception ends the instance: the platform starts a fresh one.
//
// Run by hand (CONTAINERPUB_SOCKET unset: `docker run -i --rm <image>`, or
// `node .containerpub/bootstrap.mjs` in a version's directory), without the platform:
//   PORT set   serves the function over HTTP on 0.0.0.0:PORT: every path is the function's (as
//              /http/… is under the platform); an event handler gets the JSON body as its event and
//              answers JSON 200. PORT=0 picks a free port. The address is printed on stderr.
//   otherwise  one invocation: the JSON event is read from stdin (empty: null, at most EVENT_LIMIT),
//              the result printed on stdout as one JSON line, the envelope of POST /invoke without
//              the logs: {"ok":true,"result":…} or {"ok":false,"error":"…"}. Exit 0 on success, 1
//              when the event is not JSON, the handler cannot be loaded, throws, or returns what is
//              not JSON (the message on stderr too). An HTTP handler is invoked as POST /invoke
//              invokes it: the event as a JSON POST to "/", the result {status, headers, body}.
// In both, what the function prints goes to stderr only: stdout carries nothing but the result.
// Plain JavaScript, no dependencies: it runs on the image's node, or as a child process.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const socketPath = process.env.CONTAINERPUB_SOCKET;
/** Run by hand, without the platform (see the top): no protocol logs travel with the answers. */
const direct = !socketPath;
/** Per invocation, the tail of what it printed. */
const LOG_LIMIT = 64 * 1024;
/** The platform never sends more; a bigger body is not from the platform. */
const EVENT_LIMIT = 8 * 1024 * 1024;
/** The platform bounds request bodies itself (MAX_REQUEST_BYTES, at most 64 MiB). */
const HTTP_BODY_LIMIT = 64 * 1024 * 1024 + 1024;
/** Logs that travel with an endpoint answer (a header or a trailer): the tail the platform stores. */
const HTTP_LOG_LIMIT = 16 * 1024;
/** Protocol headers: the platform's (request) and the instance's (response); a function never sees or sets them. */
const PROTOCOL_PREFIX = 'x-containerpub-';
/** Connection-level headers: they describe one hop, not the message. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length']);

const invocation = new AsyncLocalStorage();
const writeStderr = process.stderr.write.bind(process.stderr);
/** The result channel of a run by hand: the only writer of the real stdout. */
const writeStdout = process.stdout.write.bind(process.stdout);

// Before any user code runs: stdout is not a result channel any more, but keep prints in one stream
// (stderr), so the instance log shows them in order; attribute them to the running invocation.
function capture(chunk, encoding, callback) {
  const logs = invocation.getStore();
  if (logs) logs.write(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
  return writeStderr(chunk, encoding, callback);
}
process.stdout.write = capture;
process.stderr.write = capture;

class LogTail {
  parts = [];
  size = 0;
  dropped = 0;
  write(text) {
    this.parts.push(text);
    this.size += text.length;
    while (this.size > LOG_LIMIT && this.parts.length > 1) {
      const first = this.parts.shift();
      this.size -= first.length;
      this.dropped += first.length;
    }
    if (this.size > LOG_LIMIT) {
      const only = this.parts[0];
      this.parts[0] = only.slice(only.length - LOG_LIMIT);
      this.dropped += only.length - LOG_LIMIT;
      this.size = LOG_LIMIT;
    }
  }
  text() {
    const body = this.parts.join('');
    return this.dropped > 0 ? `[${this.dropped} characters of earlier output dropped]\n${body}` : body;
  }
}

function messageOf(err) {
  if (err instanceof Error) return err.message || err.name || 'error';
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err) ?? String(err);
  } catch {
    return String(err);
  }
}

function oneLine(text) {
  return String(text).replace(/\s*[\r\n]+\s*/g, ' ').trim() || 'error';
}

/** A run by hand from stdin owes its caller one line on stdout, whatever happens: until it is written. */
let owesResult = false;
let dying = false;

function die(err) {
  if (dying) return;
  dying = true;
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  const message = oneLine(messageOf(err));
  const exit = () => process.exit(1);
  setTimeout(exit, 500).unref();
  // the stack is for the logs; the platform reports the last line as the reason
  writeStderr(`${stack ? stack + '\n' : ''}${message}\n`, () => {
    if (!owesResult) return exit();
    owesResult = false;
    writeStdout(JSON.stringify({ ok: false, error: message }) + '\n', exit);
  });
}

process.on('uncaughtException', die);
process.on('unhandledRejection', die);
// In a container the bootstrap is PID 1, which ignores SIGTERM and SIGINT unless it handles them
// (Ctrl-C on `docker run` must stop a run by hand).
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(130));

// An orphan ends itself: when the platform process that started it dies (the process driver),
// nobody will send it work or stop it any more. The platform names itself: a parent killed right
// after the spawn would otherwise already be gone (ppid 1) when this line runs. A run by hand has
// no platform to outlive.
const parent = Number(process.env.CONTAINERPUB_PARENT_PID) || process.ppid;
if (!direct && parent > 1) {
  const orphaned = () => process.ppid !== parent;
  if (orphaned()) process.exit(1);
  setInterval(() => {
    if (orphaned()) process.exit(1);
  }, 1000).unref();
}

/**
 * What the module exports: an HTTP handler (a `fetch` on the default export, or a named `fetch`),
 * else an event handler (a default export that is a function, CJS `module.exports = fn`, or a
 * `handler` export).
 */
function pickHandler(mod) {
  const def = mod.default;
  if (def && typeof def === 'object' && typeof def.fetch === 'function') return { kind: 'http', fetch: (r, c) => def.fetch(r, c) };
  if (typeof mod.fetch === 'function') return { kind: 'http', fetch: mod.fetch };
  for (const candidate of [def, mod.handler, def?.handler]) {
    if (typeof candidate === 'function') return { kind: 'event', handler: candidate };
  }
  return null;
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req, limit = EVENT_LIMIT, what = 'the request body') {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(Object.assign(new Error(`${what} is larger than ${limit} bytes`), { tooLarge: true }));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
  });
}

/** `pending`, when given, collects what waitUntil is handed (a run by hand waits for it before it exits). */
function invocationContext(requestId, pending) {
  const version = Number(process.env.CONTAINERPUB_VERSION);
  return {
    functionId: process.env.CONTAINERPUB_FUNCTION_ID ?? '',
    version: Number.isFinite(version) ? version : 0,
    deploymentId: process.env.CONTAINERPUB_DEPLOYMENT_ID ?? '',
    instanceId: process.env.CONTAINERPUB_INSTANCE_ID ?? '',
    requestId,
    // Work after the answer (as on Workers): the instance stays up, but it may be stopped once idle.
    waitUntil(promise) {
      const settled = Promise.resolve(promise).catch((err) => process.stderr.write(`waitUntil: ${messageOf(err)}\n`));
      pending?.push(settled);
    },
  };
}

async function invoke(loaded, req, res) {
  const requestId = String(req.headers['x-containerpub-request-id'] ?? '');
  const text = (await readBody(req)).toString('utf8');
  let event = null;
  if (text.trim() !== '') {
    try {
      event = JSON.parse(text);
    } catch (err) {
      send(res, 400, JSON.stringify({ ok: false, error: `the event is not valid JSON: ${messageOf(err)}`, logs: '' }));
      return;
    }
  }
  const context = invocationContext(requestId);
  const logs = new LogTail();
  await invocation.run(logs, async () => {
    let result;
    try {
      result = loaded.kind === 'http' ? await fetchAsEvent(loaded, event, context) : await loaded.handler(event, context);
    } catch (err) {
      logStack(err);
      send(res, 200, JSON.stringify({ ok: false, error: oneLine(messageOf(err)), logs: logs.text() }));
      return;
    }
    const json = toJson(result);
    if (json.error) {
      send(res, 200, JSON.stringify({ ok: false, error: json.error, logs: logs.text() }));
      return;
    }
    // the result goes in as it was serialized: no second pass over a large result
    send(res, 200, `{"ok":true,"logs":${JSON.stringify(logs.text())},"result":${json.text}}`);
  });
}

function logStack(err) {
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  if (stack) process.stderr.write(stack + '\n');
}

/** A handler's result as JSON text, or why it cannot be. */
function toJson(result) {
  let text;
  try {
    text = JSON.stringify(result ?? null);
  } catch (err) {
    return { error: `the handler's result is not JSON-serializable: ${messageOf(err)}` };
  }
  if (text === undefined) return { error: `the handler's result is not JSON-serializable (a ${typeof result})` };
  return { text };
}

/**
 * POST …/invoke on an HTTP handler: the event goes in as a JSON POST to "/", and the Response comes
 * back as {status, headers, body} (the body as text, or base64 with bodyEncoding when not UTF-8).
 */
async function fetchAsEvent(loaded, event, context) {
  const request = new Request('http://localhost/', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(event),
  });
  const response = await loaded.fetch(request, context);
  checkResponse(response);
  const bytes = Buffer.from(await response.arrayBuffer());
  const headers = {};
  for (const [name, value] of response.headers) if (name !== 'set-cookie') headers[name] = value;
  const cookies = response.headers.getSetCookie?.() ?? [];
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  const text = bytes.toString('utf8');
  const utf8 = Buffer.from(text, 'utf8').equals(bytes);
  return { status: response.status, headers, body: utf8 ? text : bytes.toString('base64'), ...(utf8 ? {} : { bodyEncoding: 'base64' }) };
}

function checkResponse(response) {
  if (!response || typeof response !== 'object' || typeof response.status !== 'number' || typeof response.headers?.get !== 'function') {
    const what = response === null ? 'null' : typeof response;
    throw new Error(`the fetch handler must return a Response, not ${what === 'object' ? 'an object that is not a Response' : what}`);
  }
}

// ------------------------------------------------------------------ endpoint requests

/**
 * ANY /http/<path>: a request to the function's endpoint. The platform has checked access, removed
 * hop-by-hop headers and credentials it consumed, and added X-Forwarded-For/-Proto/-Host/-Prefix;
 * the body is complete (the platform bounds and buffers it). The answer is the function's own:
 *   - HTTP handlers: the Response's status, headers and body. A body known in full at once (a
 *     string, bytes, JSON) goes with its Content-Length and the invocation's logs in the
 *     X-ContainerPub-Logs header; a stream goes chunked as it is produced, with the logs (and,
 *     when the stream fails, X-ContainerPub-Error) in the trailers. A Content-Length the function
 *     set on a stream travels as X-ContainerPub-Content-Length.
 *   - event handlers: the body parsed as JSON (or null when empty) is the event; the result
 *     answers 200 as JSON.
 * A failure of the function rather than an answer of it (it threw, returned no Response, the body
 * was not JSON for an event handler) answers with X-ContainerPub-Error: <code> and a JSON body
 * {"error": "…", "logs": "…"}: the platform turns it into its own error.
 * Run by hand (PORT), every path is the function's (`prefix` ''), no logs travel with the answer
 * (they are on stderr) and the request id is made here.
 */
async function serveHttp(loaded, req, res, prefix = '/http') {
  const requestId = direct ? randomUUID() : String(req.headers['x-containerpub-request-id'] ?? '');
  const body = await readBody(req, HTTP_BODY_LIMIT);
  const context = invocationContext(requestId);
  const logs = new LogTail();
  // the platform hung up (its caller went away, or the invocation timed out): tell the handler
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort(new Error('the client went away'));
  });
  await invocation.run(logs, async () => {
    try {
      if (loaded.kind === 'event') await answerEvent(loaded, body, context, logs, res);
      else await answerFetch(loaded, req, body, context, logs, res, gone.signal, prefix);
    } catch (err) {
      logStack(err);
      failure(res, 'function_error', oneLine(messageOf(err)), logs);
    }
  });
}

function logsHeader(logs) {
  const text = logs.text();
  const tail = text.length > HTTP_LOG_LIMIT ? text.slice(text.length - HTTP_LOG_LIMIT) : text;
  return Buffer.from(tail, 'utf8').toString('base64');
}

/** Adds the logs header to a response head (a flat list), except when run by hand. */
function withLogs(head, logs) {
  if (!direct) head.push('x-containerpub-logs', logsHeader(logs));
  return head;
}

function failure(res, code, message, logs) {
  if (res.headersSent) {
    // mid-stream: the trailers say so, and the platform cuts its caller's connection
    res.addTrailers(direct ? { 'x-containerpub-error': code } : { 'x-containerpub-error': code, 'x-containerpub-logs': logsHeader(logs) });
    res.end();
    return;
  }
  // run by hand there is no platform to turn this into its own error: a body it cannot take is the caller's fault
  const status = !direct ? 500 : code === 'invalid_json' ? 400 : code === 'payload_too_large' ? 413 : 500;
  const text = JSON.stringify(direct ? { error: message } : { error: message, logs: logs.text() });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-containerpub-error': code });
  res.end(text);
}

async function answerEvent(loaded, body, context, logs, res) {
  const text = body.toString('utf8');
  let event = null;
  if (text.trim() !== '') {
    try {
      event = JSON.parse(text);
    } catch (err) {
      failure(res, 'invalid_json', `the request body is not valid JSON: ${messageOf(err)}`, logs);
      return;
    }
  }
  const result = await loaded.handler(event, context);
  const json = toJson(result);
  if (json.error) return failure(res, 'function_error', json.error, logs);
  res.writeHead(200, withLogs(['content-type', 'application/json', 'content-length', String(Buffer.byteLength(json.text))], logs));
  res.end(json.text);
}

function toRequest(req, body, signal, prefix) {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    // the platform's own hop (keep-alive on the socket) is not the caller's
    if (name.startsWith(PROTOCOL_PREFIX) || (HOP_BY_HOP.has(name) && name !== 'content-length')) continue;
    headers.append(name, raw[i + 1]);
  }
  const proto = headers.get('x-forwarded-proto') ?? 'http';
  const host = headers.get('x-forwarded-host') ?? headers.get('host') ?? 'localhost';
  const url = `${proto}://${host}${req.url.slice(prefix.length)}`;
  const method = req.method;
  const withBody = method !== 'GET' && method !== 'HEAD';
  return new Request(url, { method, headers, body: withBody ? body : undefined, signal });
}

/** Resolves with the read, or with PENDING when it is not done by the next turn of the event loop. */
const PENDING = Symbol('pending');
function settledSoon(promise) {
  return Promise.race([promise, new Promise((resolve) => setImmediate(resolve, PENDING))]);
}

async function answerFetch(loaded, req, body, context, logs, res, signal, prefix) {
  const response = await loaded.fetch(toRequest(req, body, signal, prefix), context);
  checkResponse(response);
  const head = [];
  let declaredLength = null;
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie' || name.startsWith(PROTOCOL_PREFIX)) continue;
    if (name === 'content-length') declaredLength = value;
    if (HOP_BY_HOP.has(name)) continue;
    head.push(name, value);
  }
  // each cookie on its own line: they cannot be folded into one
  for (const cookie of response.headers.getSetCookie?.() ?? []) head.push('set-cookie', cookie);
  const status = response.status;
  const bodiless = req.method === 'HEAD' || status === 204 || status === 205 || status === 304 || !response.body;
  if (bodiless) {
    if (declaredLength !== null) head.push('x-containerpub-content-length', declaredLength);
    else if (req.method !== 'HEAD' && status !== 204 && status !== 304) head.push('content-length', '0');
    res.writeHead(status, withLogs(head, logs));
    res.end();
    response.body?.cancel().catch(() => {});
    return;
  }
  const reader = response.body.getReader();
  // A body that is all there at once (a string, bytes, JSON) goes with its length; one that is
  // still being produced (a stream, server-sent events) goes out chunk by chunk, at once.
  const firstRead = reader.read();
  const first = await settledSoon(firstRead);
  if (first === PENDING) return streamBody(reader, status, head, declaredLength, [], firstRead, logs, res);
  if (first.done) return answerWhole(res, status, head, Buffer.alloc(0), logs);
  const secondRead = reader.read();
  const second = await settledSoon(secondRead);
  if (second !== PENDING && second.done) return answerWhole(res, status, head, toBytes(first.value), logs);
  return streamBody(reader, status, head, declaredLength, [toBytes(first.value)], secondRead, logs, res);
}

function answerWhole(res, status, head, bytes, logs) {
  head.push('content-length', String(bytes.length));
  res.writeHead(status, withLogs(head, logs));
  res.end(bytes);
}

/** A chunk of a response stream as bytes (Node streams may carry strings too). */
function toBytes(chunk) {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (ArrayBuffer.isView(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return Buffer.from(chunk);
  throw new TypeError(`the response body stream produced ${chunk === null ? 'null' : `a ${typeof chunk}`}, not bytes`);
}

async function streamBody(reader, status, head, declaredLength, buffered, nextRead, logs, res) {
  if (declaredLength !== null) head.push('x-containerpub-content-length', declaredLength);
  head.push('trailer', direct ? 'x-containerpub-error' : 'x-containerpub-logs, x-containerpub-error');
  res.writeHead(status, head);
  res.flushHeaders();
  const GONE = Symbol('gone');
  const gone = new Promise((resolve) => res.once('close', () => resolve(GONE)));
  let sent = 0;
  const write = async (bytes) => {
    sent += bytes.length;
    if (!res.write(bytes)) await Promise.race([new Promise((r) => res.once('drain', r)), gone]);
  };
  try {
    for (const bytes of buffered) await write(bytes);
    let read = nextRead;
    for (;;) {
      const r = await Promise.race([read, gone]);
      if (r === GONE || res.destroyed) {
        reader.cancel().catch(() => {});
        return;
      }
      if (r.done) break;
      await write(toBytes(r.value));
      read = reader.read();
    }
  } catch (err) {
    logStack(err);
    reader.cancel().catch(() => {});
    if (!res.destroyed) failure(res, 'function_error', oneLine(messageOf(err)), logs);
    return;
  }
  if (declaredLength !== null && Number(declaredLength) !== sent) {
    failure(res, 'function_error', `the response declared Content-Length ${declaredLength} but its body was ${sent} bytes`, logs);
    return;
  }
  if (!direct) res.addTrailers({ 'x-containerpub-logs': logsHeader(logs) });
  res.end();
}

/**
 * The handler module, loaded on the first readiness check: by then the platform has locked the
 * instance's directory (its socket is all it holds), so no function code ever runs while the
 * directory is writable.
 */
let loading = null;
function loadHandler() {
  loading ??= (async () => {
    const { entry } = JSON.parse(readFileSync(path.join(here, 'entry.json'), 'utf8'));
    if (typeof entry !== 'string' || entry === '') throw new Error('entry.json does not name an entry module');
    const mod = await import(pathToFileURL(path.resolve(root, entry)).href);
    const loaded = pickHandler(mod);
    if (!loaded) {
      throw new Error(
        `${entry} does not export a handler: export default { fetch(request, context) } (HTTP), or export default a function (event)`,
      );
    }
    return { ...loaded, entry };
  })();
  // a module that cannot load ends the instance: the platform reports why from its output
  loading.catch(die);
  return loading;
}

/** A message for the person running the function by hand, not a crash: no stack trace with it. */
function plainError(message) {
  const err = new Error(message);
  err.stack = '';
  return err;
}

/** Run by hand, one invocation: the event from stdin, the result on stdout (see the top). */
async function runOnce() {
  owesResult = true;
  if (process.stdin.isTTY) writeStderr('containerpub: reading a JSON event on stdin (end it with Ctrl-D)\n');
  let text;
  try {
    text = (await readBody(process.stdin, EVENT_LIMIT, 'the event on stdin')).toString('utf8');
  } catch (err) {
    throw plainError(messageOf(err));
  }
  let event = null;
  if (text.trim() !== '') {
    try {
      event = JSON.parse(text);
    } catch (err) {
      throw plainError(`the event on stdin is not valid JSON: ${messageOf(err)}`);
    }
  }
  const loaded = await loadHandler();
  const pending = [];
  const context = invocationContext(randomUUID(), pending);
  let result;
  try {
    result = loaded.kind === 'http' ? await fetchAsEvent(loaded, event, context) : await loaded.handler(event, context);
  } catch (err) {
    logStack(err);
    throw plainError(oneLine(messageOf(err)));
  }
  const json = toJson(result);
  if (json.error) throw plainError(json.error);
  owesResult = false;
  await new Promise((resolve) => writeStdout(`{"ok":true,"result":${json.text}}\n`, resolve));
  await Promise.allSettled(pending);
  // whatever the function left open (a timer, a connection) must not keep a one-shot run alive
  process.exit(0);
}

/** Run by hand with PORT: the function over HTTP, every path its own (see serveHttp). */
async function servePort(value) {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw plainError(`PORT must be a port number (0 to 65535), not "${value}"`);
  const loaded = await loadHandler();
  const server = http.createServer((req, res) => {
    serveHttp(loaded, req, res, '').catch((err) => {
      if (!res.headersSent) failure(res, err?.tooLarge ? 'payload_too_large' : 'function_error', messageOf(err), new LogTail());
      else res.destroy();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '0.0.0.0' }, resolve);
  });
  writeStderr(`containerpub: serving ${loaded.entry} (${loaded.kind} handler) on http://0.0.0.0:${server.address().port}\n`);
}

async function main() {
  if (!socketPath) {
    const port = process.env.PORT;
    return port !== undefined && port !== '' ? servePort(port) : runOnce();
  }
  let handler = null;
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/ready') {
      if (handler) return send(res, 200, '{"ready":true}');
      // answered once loaded: one round trip instead of polling
      loadHandler().then(
        (h) => {
          handler = h;
          send(res, 200, '{"ready":true}');
        },
        () => send(res, 503, '{"ready":false}'),
      );
      return;
    }
    if (req.method === 'POST' && req.url === '/invoke') {
      if (!handler) return send(res, 503, JSON.stringify({ ok: false, error: 'the function is not loaded yet', logs: '' }));
      invoke(handler, req, res).catch((err) => {
        if (!res.headersSent) send(res, 400, JSON.stringify({ ok: false, error: messageOf(err), logs: '' }));
        else res.destroy();
      });
      return;
    }
    if (req.url.startsWith('/http/')) {
      if (!handler) return send(res, 503, JSON.stringify({ error: 'the function is not loaded yet' }));
      serveHttp(handler, req, res).catch((err) => {
        if (!res.headersSent) failure(res, 'function_error', messageOf(err), new LogTail());
        else res.destroy();
      });
      return;
    }
    send(res, 404, '{"ok":false,"error":"no such route"}');
  });
  // the platform bounds every invocation itself; Node's own request timeouts would cut long ones
  server.requestTimeout = 0;
  server.headersTimeout = 0;
  server.keepAliveTimeout = 0;
  rmSync(socketPath, { force: true });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path: socketPath, readableAll: true, writableAll: true }, resolve);
  });
  // the platform may run as another user than the function (nobody in a container)
  chmodSync(socketPath, 0o777);
}

main().catch(die);
