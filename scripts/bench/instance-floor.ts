// The cold-start floors of warm instances, done by hand: the same bootstrap, started bare (a child
// `node` for the process driver here; a container for docker in docker.ts), polled on its socket
// until `GET /ready` answers, then sent one `POST /invoke`. No platform around it: no HTTP API, no
// pool, no database. What the platform adds to a cold start is the difference.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { InstanceChannel } from '../../shared/runtime/instance.ts';
import { BOOTSTRAP_FILE, SOCKET_NAME, instanceEnv } from '../../shared/runtime/protocol.ts';
import { sleep } from './stats.ts';

/** How long a bare instance may take to answer, before the floor gives up on it. */
const FLOOR_DEADLINE_MS = 30_000;

/**
 * A fresh directory for one bare instance's socket, writable by anyone: in a container the
 * bootstrap runs as nobody. Short (under /tmp), for the 108-byte limit of Unix socket paths.
 */
export function bareSocketDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpb-floor-'));
  fs.chmodSync(dir, 0o777);
  return dir;
}

/** One `GET /ready`: its status, or 0 when nothing listens yet (no socket, refused). */
function probeReady(socketPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath, path: '/ready', method: 'GET', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

/**
 * Polls `GET /ready` every millisecond until it answers 200 (the platform backs off up to 25 ms
 * between checks; the floor is what a start costs, not what a polling schedule costs), then sends
 * one invocation over the protocol's own client and checks it succeeded. `gone()` says why the
 * instance died, when it did: a dead instance fails the floor at once instead of at the deadline.
 */
export async function readyThenInvoke(socketPath: string, body: string, gone: () => string | null): Promise<void> {
  const deadline = Date.now() + FLOOR_DEADLINE_MS;
  for (;;) {
    if ((await probeReady(socketPath)) === 200) break;
    const why = gone();
    if (why) throw new Error(`the bare instance died before it was ready: ${why}`);
    if (Date.now() > deadline) throw new Error(`the bare instance was not ready within ${FLOOR_DEADLINE_MS} ms`);
    await sleep(1);
  }
  const channel = new InstanceChannel(socketPath, 1);
  try {
    const reply = await channel.invoke(randomUUID(), body, AbortSignal.timeout(FLOOR_DEADLINE_MS));
    if (!reply.ok) throw new Error(`the bare instance answered an error: ${reply.error}`);
  } finally {
    channel.close();
  }
}

/**
 * The process driver's cold start, bare: `node --max-old-space-size=M .containerpub/bootstrap.mjs`
 * in the version's unpacked directory, with only PATH and the instance's variables (as
 * process-instances.ts spawns it), until it is ready and has answered one invocation. Returns the
 * ms from spawn to that answer; the process is killed afterwards (not timed).
 */
export async function bareProcessColdStart(input: {
  artifactDir: string;
  memoryMb: number;
  functionId: string;
  version: number;
  deploymentId: string;
  body: string;
}): Promise<number> {
  const dir = bareSocketDir();
  const socketPath = path.join(dir, SOCKET_NAME);
  let output = '';
  let exit: string | null = null;
  const t0 = performance.now();
  const child = spawn(process.execPath, [`--max-old-space-size=${input.memoryMb}`, BOOTSTRAP_FILE], {
    cwd: input.artifactDir,
    env: {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      ...instanceEnv({ ...input, instanceId: `floor-${randomUUID().slice(0, 8)}`, socketPath }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const exited = new Promise<void>((resolve) => {
    child.once('error', (err) => {
      exit = err.message;
      resolve();
    });
    child.once('exit', (code, signal) => {
      exit = `exit ${code ?? signal}: ${output.trim().split('\n').at(-1) ?? ''}`;
      resolve();
    });
  });
  try {
    await readyThenInvoke(socketPath, input.body, () => exit);
    return performance.now() - t0;
  } finally {
    if (child.pid !== undefined && exit === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
