// A process driver over a temporary directory, and built versions of small functions: what the
// runtime unit tests start instances of.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { ProcessDriver } from '../../shared/runtime/process-driver.ts';
import type { PoolSettings } from '../../shared/runtime/pool.ts';
import type { RuntimeLogger } from '../../shared/runtime/protocol.ts';
import type { BuildInput, FunctionKind } from '../../shared/runtime/types.ts';

/** A source directory under `root` holding `files`, as the archive step leaves it. */
export function writeSourceDir(root: string, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(root, 'src-'));
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

export function processFixture(logger?: RuntimeLogger) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-process-'));
  const artifactsDir = path.join(root, 'artifacts');
  const instanceDir = path.join(root, 'instances');
  const driver = new ProcessDriver({ artifactsDir, instanceDir, logger });

  const sourceDir = (files: Record<string, string>) => writeSourceDir(root, files);

  async function build(files: Record<string, string>, fn: FunctionKind = { kind: 'node', entry: 'index.mjs' }) {
    const lines: string[] = [];
    const input: BuildInput = {
      functionId: randomUUID(),
      deploymentId: randomUUID(),
      version: 1,
      sourceDir: sourceDir(files),
      function: fn,
      log: (line) => lines.push(line),
      signal: new AbortController().signal,
    };
    const result = await driver.build(input);
    return { ...input, imageTag: null, result, lines };
  }

  return {
    root,
    artifactsDir,
    instanceDir,
    driver,
    sourceDir,
    build,
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

export const poolSettings = (over: Partial<PoolSettings> = {}): PoolSettings => ({
  maxInstances: 2,
  concurrency: 1,
  queueMs: 10_000,
  queueMax: 100,
  idleMs: 60_000,
  timeoutMs: 10_000,
  startTimeoutMs: 10_000,
  memoryMb: 128,
  ...over,
});

/** Alive and not a zombie (a zombie has exited; only its parent has not collected it yet). */
export function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
