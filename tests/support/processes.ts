// Real runner processes for the multi-runner tests, and a stalling S3 proxy that holds one
// download open so a runner can be killed at a known point mid-build.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestPlatform } from './platform.ts';

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
    LOG_LEVEL: 'info',
    ...extra,
  };
}

export function spawnRunner(id: string, env: Record<string, string>): RunnerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'runner/main.ts'], {
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

/** An HTTP proxy to S3 that never answers GETs whose path contains `holdPath` (until closed). */
export async function startStallingProxy(target: string, holdPath: string) {
  const upstream = new URL(target);
  let held = 0;
  const waiting: (() => void)[] = [];
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url?.includes(holdPath)) {
      held++;
      waiting.splice(0).forEach((w) => w());
      return; // hold: no answer
    }
    const fwd = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
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
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
