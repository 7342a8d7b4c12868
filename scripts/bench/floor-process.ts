// The bare HTTP floors of the warm and http scenarios, in a process of their own (as the platform's
// server is): a floor script (floor-server.ts, http-floor-server.ts) given the handler module
// unpacked from the same archive the platform got. The script prints one JSON line {url}.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { extractArchive } from '../../shared/archive/extract.ts';
import { nodeArgsFor } from '../../tests/support/bundle.ts';
import { repoRoot } from './harness.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

export interface FloorServer {
  url: string;
  pid: number;
  close(): Promise<void>;
}

/** The handler module of the bench's function, unpacked from the same archive the platform got. */
export async function unpackHandler(archive: Buffer): Promise<{ modulePath: string; dir: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bench-handler-'));
  await extractArchive(Readable.from([archive]), dir);
  const { main } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { main: string };
  return { modulePath: path.join(dir, main), dir };
}

/** `script` (a file beside this one) serving `modulePath`, in a process of its own. */
export async function startFloorServer(modulePath: string, script = 'floor-server.ts'): Promise<FloorServer> {
  const child = spawn(process.execPath, [...nodeArgsFor(path.relative(repoRoot, path.join(here, script))), modulePath], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error('did not start within 30 s')), 30_000);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`the floor server (${script}): ${err.message}\n${stderr}`));
    };
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.trim().startsWith('{'));
      if (!line) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve((JSON.parse(line) as { url: string }).url);
    });
    const onExit = (code: number | null) => fail(new Error(`exited (code ${code}) before it listened`));
    child.once('exit', onExit);
  });
  return {
    url,
    pid: child.pid!,
    async close() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `n` split into at most `parts` chunks of (nearly) equal size, none smaller than `min`. */
export function chunks(n: number, parts: number, min: number): number[] {
  const k = Math.max(1, Math.min(parts, Math.floor(n / min)));
  return Array.from({ length: k }, (_, i) => Math.floor(n / k) + (i < n % k ? 1 : 0));
}
