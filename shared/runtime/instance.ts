// What both instance backends share: the per-instance directory that holds the socket (and the
// owner's identity, for the orphan sweep), the readiness check, and invocations over the socket.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { currentOwner, ownerAlive, type ProcessOwner } from '../process-owner.ts';
import { TailBuffer, lastLine } from './output.ts';
import { REQUEST_ID_HEADER, SOCKET_NAME } from './protocol.ts';
import type { InstanceExit, RunningInstance } from './types.ts';

/** An instance's id: its socket directory, container and log lines are named after it. */
export const newInstanceId = () => `i-${randomBytes(6).toString('hex')}`;

/** The largest answer an instance may give to one invocation (the result plus its logs). */
export const REPLY_LIMIT_BYTES = 8 * 1024 * 1024 + 256 * 1024;
/** What is kept of an instance's own output (stdout and stderr). */
export const INSTANCE_LOG_BYTES = 64 * 1024;
/** Unix socket paths are limited to 108 bytes on Linux (104 on macOS). */
const MAX_SOCKET_PATH = 100;

/** The instance did not start, or did not get ready in time. `logs` is what it printed. */
export class StartError extends Error {
  constructor(
    message: string,
    readonly logs: string,
  ) {
    super(message);
  }
}

// ------------------------------------------------------------------ directories

/** The socket of instance `id` under `baseDir` (its length checked when a backend starts: checkSocketDir). */
export function socketPathFor(baseDir: string, id: string): string {
  return path.join(baseDir, id, SOCKET_NAME);
}

/** Fails early and clearly when socket paths under `baseDir` would be too long. */
export function checkSocketDir(baseDir: string): void {
  const sample = socketPathFor(path.resolve(baseDir), 'i-000000000000');
  if (Buffer.byteLength(sample) > MAX_SOCKET_PATH) {
    throw new Error(
      `INSTANCE_DIR ${baseDir} is too long for Unix socket paths (${Buffer.byteLength(sample)} bytes with the socket name; ` +
        `at most ${MAX_SOCKET_PATH}): set INSTANCE_DIR to a shorter path`,
    );
  }
}

/**
 * Creates the directory of one instance, writable by the function's user (nobody in a container)
 * for its socket, with an owner file beside it for the orphan sweep.
 */
export function createInstanceDir(baseDir: string, id: string, extra: Record<string, unknown> = {}): string {
  fs.mkdirSync(baseDir, { recursive: true, mode: 0o711 });
  const dir = path.join(baseDir, id);
  fs.mkdirSync(dir, { mode: 0o777 });
  fs.chmodSync(dir, 0o777); // the umask may have taken bits off
  fs.writeFileSync(path.join(dir, 'owner.json'), JSON.stringify({ owner: currentOwner, ...extra }));
  return dir;
}

/**
 * Once the instance listens, its directory (mounted writable into the container for the socket)
 * becomes read-only for the function: it could otherwise fill the host's disk through it. The
 * platform owns the directory, so the function (another user, no capabilities) cannot undo this.
 */
function lockInstanceDir(dir: string): void {
  try {
    fs.chmodSync(dir, 0o555);
  } catch {
    // gone already (the instance died): the next check reports it
  }
}

export function removeInstanceDir(baseDir: string, id: string): void {
  const dir = path.join(baseDir, id);
  try {
    fs.chmodSync(dir, 0o700); // locked (see lockInstanceDir): entries can only go once it is writable
  } catch {
    return; // gone already
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The instance directories under `baseDir` whose owner is gone, with what their owner file says. */
export function orphanedInstanceDirs(baseDir: string): { id: string; dir: string; info: Record<string, unknown> }[] {
  let names: string[];
  try {
    names = fs.readdirSync(baseDir);
  } catch {
    return [];
  }
  const orphans = [];
  for (const id of names) {
    const dir = path.join(baseDir, id);
    let info: Record<string, unknown>;
    try {
      info = JSON.parse(fs.readFileSync(path.join(dir, 'owner.json'), 'utf8'));
    } catch {
      // a directory whose owner file was never written: its creator died right there, or it
      // is not ours; only remove it once it is old enough not to be mid-creation
      const st = fs.statSync(dir, { throwIfNoEntry: false });
      if (st && Date.now() - st.mtimeMs > 60_000) orphans.push({ id, dir, info: {} });
      continue;
    }
    const owner = info.owner as ProcessOwner | undefined;
    if (owner && !ownerAlive(owner)) orphans.push({ id, dir, info });
  }
  return orphans;
}

// ------------------------------------------------------------------ output and exit

/** An instance's own output, bounded; the last line explains most deaths. */
export class InstanceLog {
  private readonly tail = new TailBuffer(INSTANCE_LOG_BYTES);

  write(chunk: Buffer | string): void {
    this.tail.write(chunk);
  }

  text(): string {
    return this.tail.toString();
  }
}

/** Words for how an instance ended, for the caller that was waiting on it. */
export function describeExit(exit: InstanceExit, log: string, memoryMb: number): string {
  if (exit.oomKilled || /JavaScript heap out of memory|Reached heap limit/.test(log)) {
    return `the instance ran out of memory (limit ${memoryMb} MB)`;
  }
  const last = lastLine(log);
  const how = exit.code === null ? `was killed${exit.signal ? ` by ${exit.signal}` : ''}` : `exited with code ${exit.code}`;
  return last ? `the instance ${how}: ${last}` : `the instance ${how}`;
}

// ------------------------------------------------------------------ readiness

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function probe(socketPath: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: '/ready', method: 'GET', agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('the readiness check timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Waits until the instance answers `GET /ready` with 200. Rejects with a StartError when it exits
 * first or `timeoutMs` passes; the caller kills it then. Polls: the socket appears when the
 * function's module has loaded, which takes from a few milliseconds to seconds.
 */
export async function waitReady(instance: RunningInstance, timeoutMs: number, memoryMb: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exit: InstanceExit | null = null;
  void instance.exited.then((e) => (exit = e));
  const fail = () => {
    if (exit) throw new StartError(`it did not get ready: ${describeExit(exit, instance.log(), memoryMb)}`, instance.log());
    if (Date.now() >= deadline) throw new StartError(`it did not get ready within ${timeoutMs} ms`, instance.log());
  };
  // 1. The socket appears once the instance listens: watched (inotify), with a poll as the backstop.
  await socketAppears(instance, deadline, fail);
  // the socket is there: the directory needs no more writes, and gets none (see lockInstanceDir)
  lockInstanceDir(path.dirname(instance.socketPath));
  // 2. GET /ready: the bootstrap answers once the function's module has loaded; a custom image
  //    may answer "not yet" for a while, so this one is polled.
  let wait = 1;
  for (;;) {
    fail();
    try {
      const status = await probe(instance.socketPath, Math.min(deadline - Date.now(), 2_000));
      if (status === 200) return;
    } catch {
      // not accepting yet (ECONNREFUSED), or the probe timed out: try again shortly
    }
    await Promise.race([sleep(Math.min(wait, Math.max(1, deadline - Date.now()))), instance.exited]);
    wait = Math.min(wait * 2, 20);
  }
}

async function socketAppears(instance: RunningInstance, deadline: number, fail: () => void): Promise<void> {
  const dir = path.dirname(instance.socketPath);
  let wake: () => void = () => {};
  let watcher: fs.FSWatcher | null = null;
  try {
    watcher = fs.watch(dir, () => wake());
    watcher.on('error', () => {});
  } catch {
    // no inotify here: the poll below does it alone
  }
  try {
    for (;;) {
      if (fs.existsSync(instance.socketPath)) return;
      fail();
      await Promise.race([
        new Promise<void>((r) => (wake = r)),
        sleep(Math.max(1, Math.min(20, deadline - Date.now()))),
        instance.exited,
      ]);
    }
  } finally {
    watcher?.close();
  }
}

// ------------------------------------------------------------------ invocations

export type InstanceReply =
  | { ok: true; result: unknown; logs: string }
  | { ok: false; error: string; logs: string };

/** The connection broke (the instance died, or was killed) before it answered. */
export class ChannelError extends Error {}

/** An endpoint request as it goes to the instance (`ANY /http/<path>`; see the bootstrap's serveHttp). */
export interface ForwardedRequest {
  method: string;
  /** the path within the function, with its query */
  path: string;
  /** flat [name, value, name, value, …], hop-by-hop headers already removed */
  headers: string[];
  body: Buffer;
}

/** Logs travel in a header or trailer of an endpoint answer (base64; at most 16 KiB of text). */
const FORWARD_MAX_HEADER_BYTES = 96 * 1024;

/** Keep-alive HTTP over one instance's socket. */
export class InstanceChannel {
  private readonly agent: http.Agent;

  constructor(
    readonly socketPath: string,
    concurrency: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });
  }

  invoke(requestId: string, body: string, signal: AbortSignal): Promise<InstanceReply> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          path: '/invoke',
          method: 'POST',
          agent: this.agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            [REQUEST_ID_HEADER]: requestId,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > REPLY_LIMIT_BYTES) {
              res.destroy();
              resolve({ ok: false, error: `the result is larger than ${REPLY_LIMIT_BYTES - 256 * 1024} bytes`, logs: '' });
              return;
            }
            chunks.push(chunk);
          });
          res.on('error', (err) => reject(new ChannelError(err.message)));
          res.on('end', () => {
            if (size > REPLY_LIMIT_BYTES) return;
            resolve(parseReply(res.statusCode ?? 0, Buffer.concat(chunks, size).toString('utf8')));
          });
        },
      );
      const onAbort = () => req.destroy(new ChannelError('aborted'));
      signal.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal.removeEventListener('abort', onAbort));
      req.on('error', (err) => reject(err instanceof ChannelError ? err : new ChannelError(err.message)));
      req.end(body);
    });
  }

  /**
   * Sends an endpoint request, its body with it. The caller listens for 'response' and 'error',
   * and destroys the request to abandon it (no abort signal here: it is per request, on the hot path).
   */
  send(request: ForwardedRequest): http.ClientRequest {
    const req = http.request({
      socketPath: this.socketPath,
      path: `/http${request.path}`,
      method: request.method,
      agent: this.agent,
      headers: [...request.headers, 'content-length', String(request.body.length)],
      maxHeaderSize: FORWARD_MAX_HEADER_BYTES,
      // no Host of our own: the caller's is in `headers`
      setHost: false,
    });
    req.end(request.body);
    return req;
  }

  close(): void {
    this.agent.destroy();
  }
}

function parseReply(status: number, text: string): InstanceReply {
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    const head = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    return { ok: false, error: `the instance answered ${status} with something that is not the protocol: ${head}`, logs: '' };
  }
  const r = reply as { ok?: unknown; result?: unknown; error?: unknown; logs?: unknown };
  const logs = typeof r.logs === 'string' ? r.logs : '';
  if (status === 200 && r.ok === true) return { ok: true, result: r.result ?? null, logs };
  if (r.ok === false && typeof r.error === 'string') return { ok: false, error: r.error || 'error', logs };
  return { ok: false, error: `the instance answered ${status} without the protocol's ok field`, logs };
}
