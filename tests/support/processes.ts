// Real runner processes for the multi-runner tests, and a stalling S3 proxy that holds one
// download open so a runner can be killed at a known point mid-build.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { nodeArgsFor } from './bundle.ts';
import type { TestPlatform } from './platform.ts';

/**
 * A child that exits before reading its input (a usage error, a refusal) closes the pipe: writing
 * the input then fails with EPIPE, which, unheard, crashes the test file. The exit code and output
 * are what a test judges; any other error on stdin still throws.
 */
export function ignoreClosedStdin(child: ChildProcess): void {
  child.stdin!.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

export interface RunnerProcess {
  id: string;
  child: ChildProcess;
  output(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function runnerEnv(tp: TestPlatform, extra: Record<string, string> = {}): Record<string, string> {
  const c = tp.platform.config;
  return {
    PATH: process.env.PATH ?? '',
    DATA_DIR: tp.dataDir,
    DATABASE_URL: c.database.client === 'pg' ? c.database.url : `sqlite:${c.database.filename}`,
    S3_ENDPOINT: tp.platform.embeddedS3!.endpoint,
    S3_ACCESS_KEY_ID: 'S3RVER',
    S3_SECRET_ACCESS_KEY: 'S3RVER',
    S3_BUCKET: c.s3.bucket,
    RUNTIME_DRIVER: 'process',
    RUNNER_POLL_MS: '200',
    BUILD_RETRY_BASE_MS: '100',
    LOG_LEVEL: 'info',
    ...extra,
  };
}

export function spawnRunner(id: string, env: Record<string, string>): RunnerProcess {
  const child = spawn(process.execPath, nodeArgsFor('runner/main.ts'), {
    env: { ...env, RUNNER_ID: id },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return {
    id,
    child,
    output: () => out,
    kill: (signal = 'SIGTERM') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}

/** The request to `upstream` that answers `res` with what `upstream` answers; write its body. */
function forward(upstream: URL, req: http.IncomingMessage, res: http.ServerResponse): http.ClientRequest {
  const fwd = http.request(
    { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
    (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    },
  );
  fwd.on('error', () => res.destroy());
  return fwd;
}

/**
 * An HTTP proxy to S3 that never answers the requests `hold` selects (until closed, or released:
 * then they and all later ones go through). A string selects GETs whose path contains it.
 */
export async function startStallingProxy(target: string, hold: string | ((req: http.IncomingMessage) => boolean)) {
  const matches = typeof hold === 'string' ? (req: http.IncomingMessage) => req.method === 'GET' && Boolean(req.url?.includes(hold)) : hold;
  const upstream = new URL(target);
  let held = 0;
  let released = false;
  const pending: [http.IncomingMessage, http.ServerResponse][] = [];
  const waiting: (() => void)[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    if (!released && matches(req)) {
      held++;
      pending.push([req, res]);
      waiting.splice(0).forEach((w) => w());
      return; // hold: no answer
    }
    req.pipe(forward(upstream, req, res));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held: () => held,
    /** resolves once a held GET has arrived */
    untilHeld: () => (held > 0 ? Promise.resolve() : new Promise<void>((r) => waiting.push(r))),
    /** lets the held requests (unread until now) and every later one through */
    release: () => {
      released = true;
      for (const [req, res] of pending.splice(0)) req.pipe(forward(upstream, req, res));
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Runs `npm run cleanup` as its own process (the way an operator runs it). */
export function spawnCleanup(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [...nodeArgsFor('scripts/cleanup.ts'), ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, stdout: () => stdout, stderr: () => stderr };
}

export interface ApiProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  /** sends the signal and resolves with the exit code once the process is gone */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** `npm run start:api` as its own process over the test platform's database and S3. */
export async function spawnApi(env: Record<string, string>): Promise<ApiProcess> {
  const child = spawn(process.execPath, nodeArgsFor('api/main.ts'), {
    env: { PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the API did not start:\n${out}`)), 30_000);
    const look = () => {
      // one JSON object a line; the field order is the logger's business
      const m = /^\{.*"msg":"API listening".*\}$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve((JSON.parse(m[0]) as { url: string }).url);
      }
    };
    child.stderr!.on('data', look);
    exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the API exited at start:\n${out}`));
    });
  });
  return {
    url,
    child,
    output: () => out,
    stop: (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export interface CapturedRequest {
  method: string;
  /** path and query, as sent */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * An HTTP proxy to S3 that records every request whole (headers and body) before forwarding it:
 * what a real S3 would have seen, for checking a signature the way S3 does.
 */
export async function startCapturingProxy(target: string) {
  const upstream = new URL(target);
  const captured: CapturedRequest[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      captured.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      forward(upstream, req, res).end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    captured,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
