// ContainerPub bootstrap: a long-lived instance of a Node function, speaking the instance protocol
// (shared/runtime/protocol.ts). It serves HTTP on the Unix socket named by CONTAINERPUB_SOCKET and
// loads the handler module once, when first asked whether it is ready:
//   GET  /ready   200 once the module is loaded (answered when it is: the platform's readiness check)
//   POST /invoke  the JSON event as the body, the request id in X-ContainerPub-Request-Id;
//                 answers 200 {"ok":true,"result":…,"logs":"…"} or {"ok":false,"error":"…","logs":"…"}
// Module-level state lives as long as the instance: many invocations, as on Lambda.
// Everything the function prints goes to stderr (the instance's log) and, when printed while an
// invocation runs, to that invocation's own logs too (AsyncLocalStorage keeps them apart when
// several run at once). An uncaught exception ends the instance: the platform starts a fresh one.
// Plain JavaScript, no dependencies: it runs on the image's node, or as a child process.
import { AsyncLocalStorage } from 'node:async_hooks';
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const socketPath = process.env.CONTAINERPUB_SOCKET;
/** Per invocation, the tail of what it printed. */
const LOG_LIMIT = 64 * 1024;
/** The platform never sends more; a bigger body is not from the platform. */
const EVENT_LIMIT = 8 * 1024 * 1024;

const invocation = new AsyncLocalStorage();
const writeStderr = process.stderr.write.bind(process.stderr);

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

function die(err) {
  const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
  // the stack is for the logs; the platform reports the last line as the reason
  writeStderr(`${stack ? stack + '\n' : ''}${oneLine(messageOf(err))}\n`, () => process.exit(1));
  setTimeout(() => process.exit(1), 500).unref();
}

process.on('uncaughtException', die);
process.on('unhandledRejection', die);
// In a container the bootstrap is PID 1, which ignores SIGTERM unless it handles it.
process.on('SIGTERM', () => process.exit(0));

// An orphan ends itself: when the platform process that started it dies (the process driver),
// nobody will send it work or stop it any more. The platform names itself: a parent killed right
// after the spawn would otherwise already be gone (ppid 1) when this line runs.
const parent = Number(process.env.CONTAINERPUB_PARENT_PID) || process.ppid;
if (parent > 1) {
  const orphaned = () => process.ppid !== parent;
  if (orphaned()) process.exit(1);
  setInterval(() => {
    if (orphaned()) process.exit(1);
  }, 1000).unref();
}

function pickHandler(mod) {
  // ESM default export; CJS `module.exports = fn` (the default through import interop);
  // a named `handler` export (ESM, or CJS `exports.handler` seen as a named export or on default).
  for (const candidate of [mod.default, mod.handler, mod.default?.handler]) {
    if (typeof candidate === 'function') return candidate;
  }
  return null;
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > EVENT_LIMIT) {
        reject(new Error(`the event is larger than ${EVENT_LIMIT} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function invoke(handler, req, res) {
  const requestId = String(req.headers['x-containerpub-request-id'] ?? '');
  const text = await readBody(req);
  let event = null;
  if (text.trim() !== '') {
    try {
      event = JSON.parse(text);
    } catch (err) {
      send(res, 400, JSON.stringify({ ok: false, error: `the event is not valid JSON: ${messageOf(err)}`, logs: '' }));
      return;
    }
  }
  const version = Number(process.env.CONTAINERPUB_VERSION);
  const context = {
    functionId: process.env.CONTAINERPUB_FUNCTION_ID ?? '',
    version: Number.isFinite(version) ? version : 0,
    deploymentId: process.env.CONTAINERPUB_DEPLOYMENT_ID ?? '',
    instanceId: process.env.CONTAINERPUB_INSTANCE_ID ?? '',
    requestId,
  };
  const logs = new LogTail();
  await invocation.run(logs, async () => {
    let result;
    try {
      result = await handler(event, context);
    } catch (err) {
      const stack = err instanceof Error && typeof err.stack === 'string' ? err.stack : '';
      if (stack) process.stderr.write(stack + '\n');
      send(res, 200, JSON.stringify({ ok: false, error: oneLine(messageOf(err)), logs: logs.text() }));
      return;
    }
    let json;
    try {
      json = JSON.stringify(result ?? null);
    } catch (err) {
      send(res, 200, JSON.stringify({ ok: false, error: `the handler's result is not JSON-serializable: ${messageOf(err)}`, logs: logs.text() }));
      return;
    }
    if (json === undefined) {
      send(res, 200, JSON.stringify({ ok: false, error: `the handler's result is not JSON-serializable (a ${typeof result})`, logs: logs.text() }));
      return;
    }
    // the result goes in as it was serialized: no second pass over a large result
    send(res, 200, `{"ok":true,"logs":${JSON.stringify(logs.text())},"result":${json}}`);
  });
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
    const handler = pickHandler(mod);
    if (!handler) {
      throw new Error(`${entry} does not export a handler function (export default, or export a function named handler)`);
    }
    return handler;
  })();
  // a module that cannot load ends the instance: the platform reports why from its output
  loading.catch(die);
  return loading;
}

async function main() {
  if (!socketPath) throw new Error('CONTAINERPUB_SOCKET is not set: the platform starts this bootstrap');
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
