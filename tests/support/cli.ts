// The `containerpub` CLI as a real child process: one-shot runs with their exit code and output,
// and long-running ones (watch) whose output can be awaited line by line, with a bound.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CLI_ENTRY, nodeArgsFor, repoRoot } from './bundle.ts';
import { ignoreClosedStdin } from './processes.ts';

export { repoRoot };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A fresh HOME (and XDG_CONFIG_HOME inside it) under `parent`: no saved login, nothing inherited. */
export function newHome(parent = os.tmpdir()): string {
  return fs.mkdtempSync(path.join(parent, 'home-'));
}

/** A minimal environment: only what the CLI needs, so the developer's own login never leaks in. */
export function cliEnv(home: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    FORCE_COLOR: '0',
    ...extra,
  };
}

function spawnMain(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...nodeArgsFor(CLI_ENTRY), ...args], { cwd: repoRoot, env, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function runCli(
  args: string[],
  env: Record<string, string>,
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawnMain(args, env);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`containerpub ${args.join(' ')} did not exit within ${opts.timeoutMs ?? 60_000} ms\n${stdout}${stderr}`));
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    ignoreClosedStdin(child);
    child.stdin!.end(opts.input ?? '');
  });
}

export interface CliProcess {
  child: ChildProcess;
  /** stdout and stderr interleaved as they arrived */
  output(): string;
  /** resolves with the match once `pattern` appears in the output after `from` (a previous output().length) */
  waitFor(pattern: RegExp, opts?: { from?: number; timeoutMs?: number }): Promise<RegExpExecArray>;
  /** sends `signal` and resolves with the exit code, failing after `timeoutMs` */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; ms: number }>;
}

export function startCli(args: string[], env: Record<string, string>): CliProcess {
  const child = spawnMain(args, env);
  ignoreClosedStdin(child);
  child.stdin!.end();
  let out = '';
  const listeners = new Set<() => void>();
  const append = (d: Buffer) => {
    out += d;
    for (const l of listeners) l();
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  child.on('close', () => listeners.forEach((l) => l()));
  return {
    child,
    output: () => out,
    waitFor(pattern, opts = {}) {
      const timeoutMs = opts.timeoutMs ?? 30_000;
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(out.slice(opts.from ?? 0));
          if (m) {
            done();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`the CLI exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${out}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${out}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGINT', timeoutMs = 5000) {
      const started = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`the CLI did not exit within ${timeoutMs} ms of ${signal}`));
          }, timeoutMs);
        }),
      ]).finally(() => clearTimeout(timer));
      return { code, ms: Date.now() - started };
    },
  };
}

/** A port nothing listens on: bound, then released. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A Node function directory: package.json ("main": "index.mjs") and index.mjs returning `body`. */
export function writeFunctionDir(dir: string, tag: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'fn', main: 'index.mjs', type: 'module' }));
  fs.writeFileSync(path.join(dir, 'index.mjs'), handlerSource(tag));
}

export function handlerSource(tag: string): string {
  return `export default async (event, context) => ({ tag: ${JSON.stringify(tag)}, event, version: context.version });\n`;
}
