// The process driver: a version is an unpacked directory under DATA_DIR/artifacts, and each
// invocation is a child `node` process of the runner. For development without Docker only.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { OutputCollector, parseInvocationOutput } from './output.ts';
import {
  ArtifactMissingError,
  BOOTSTRAP_DIR,
  BOOTSTRAP_FILE,
  ENTRY_FILE,
  bootstrapFiles,
  checkEntry,
  encodeEvent,
  invocationEnv,
  type RuntimeLogger,
} from './protocol.ts';
import {
  BuildError,
  type ArtifactRef,
  type BuildInput,
  type BuildResult,
  type InvokeInput,
  type InvokeOutcome,
  type RuntimeDriver,
} from './types.ts';

export const PROCESS_DRIVER_WARNING =
  'RUNTIME_DRIVER=process runs functions as plain child processes of the runner: no filesystem, network, ' +
  'CPU or process isolation, memory bounded only by the V8 heap limit. Use it for development, never for untrusted code.';

export interface ProcessDriverOptions {
  /** DATA_DIR/artifacts */
  artifactsDir: string;
  memoryMb: number;
  logger?: RuntimeLogger;
}

/** After a kill, how long the pipes may take to close before the invocation is settled anyway. */
const KILL_GRACE_MS = 2_000;

export class ProcessDriver implements RuntimeDriver {
  readonly name = 'process' as const;
  private readonly artifactsDir: string;

  constructor(private readonly opts: ProcessDriverOptions) {
    this.artifactsDir = path.resolve(opts.artifactsDir);
    opts.logger?.warn(PROCESS_DRIVER_WARNING, { driver: 'process' });
  }

  describe(): string {
    return `process driver (artifacts in ${this.artifactsDir}; ${PROCESS_DRIVER_WARNING})`;
  }

  /** The directory holding one version's files. */
  artifactDir(ref: Pick<ArtifactRef, 'functionId' | 'version'>): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(ref.functionId) || !Number.isInteger(ref.version) || ref.version < 0) {
      throw new Error(`invalid artifact reference ${ref.functionId} v${ref.version}`);
    }
    return path.join(this.artifactsDir, ref.functionId, `v${ref.version}`);
  }

  async build(input: BuildInput): Promise<BuildResult> {
    if (input.function.kind === 'dockerfile') {
      throw new BuildError('a custom Dockerfile needs the docker driver (RUNTIME_DRIVER=docker)');
    }
    const { entry } = input.function;
    const checkAborted = () => {
      if (input.signal.aborted) throw new BuildError('build aborted');
    };
    checkAborted();
    const normalizedEntry = await checkEntry(input.sourceDir, entry);

    const dest = this.artifactDir(input);
    const functionDir = path.dirname(dest);
    await fs.mkdir(functionDir, { recursive: true });
    // Everything is assembled in a temporary sibling and renamed into place, so a crash or an abort
    // never leaves a half-written version that hasArtifact() would take for a built one.
    const tmp = path.join(functionDir, `.v${input.version}.tmp-${randomBytes(4).toString('hex')}`);
    try {
      await moveOrCopy(input.sourceDir, tmp);
      input.log(`process driver: unpacked the function into ${dest}`);
      checkAborted();
      await fs.rm(path.join(tmp, BOOTSTRAP_DIR), { recursive: true, force: true });
      await fs.mkdir(path.join(tmp, BOOTSTRAP_DIR));
      for (const file of bootstrapFiles(normalizedEntry)) {
        await fs.writeFile(path.join(tmp, file.path), file.content);
      }
      input.log(`process driver: added the bootstrap (entry ${normalizedEntry})`);
      checkAborted();
      await replaceDir(tmp, dest);
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
    input.log(`process driver: version ${input.version} ready (no image; runs as a child process)`);
    return { imageTag: null };
  }

  async invoke(input: InvokeInput): Promise<InvokeOutcome> {
    const dir = this.artifactDir(input);
    if (!(await this.hasArtifact(input))) {
      throw new ArtifactMissingError(`the files of ${input.functionId} v${input.version} are missing (${dir})`);
    }
    const started = performance.now();
    const output = new OutputCollector();
    const child = spawn(process.execPath, [`--max-old-space-size=${this.opts.memoryMb}`, BOOTSTRAP_FILE], {
      cwd: dir,
      // only PATH and the context: the runner's own environment (database URL, keys) stays out
      env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', ...invocationEnv(input) },
      stdio: ['pipe', 'pipe', 'pipe'],
      // its own process group, so a timeout kills whatever the function spawned too
      detached: true,
    });
    child.stdout.on('data', (chunk: Buffer) => output.stdout(chunk));
    child.stderr.on('data', (chunk: Buffer) => output.stderr(chunk));
    // the function may exit without reading its stdin: EPIPE is not our failure
    child.stdin.on('error', () => {});

    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };

    const exit = await new Promise<{ code: number | null; signal: string | null; spawnError?: Error }>((resolve) => {
      let graceTimer: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup();
        // a grandchild that escaped the group could hold the pipes open: do not wait on it forever
        graceTimer = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
          resolve({ code: child.exitCode, signal: child.signalCode });
        }, KILL_GRACE_MS);
      }, input.timeoutMs);
      child.once('error', (err) => {
        clearTimeout(timer);
        clearTimeout(graceTimer);
        resolve({ code: null, signal: null, spawnError: err });
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        clearTimeout(graceTimer);
        resolve({ code, signal });
      });
      child.stdin.end(encodeEvent(input.event));
    });
    if (exit.spawnError) throw exit.spawnError;
    // whatever the function left running in its group goes with it
    if (!timedOut && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // the group is already gone: the usual case
      }
    }
    return parseInvocationOutput(output.finish(), {
      exitCode: exit.code,
      signal: exit.signal,
      timedOut,
      timeoutMs: input.timeoutMs,
      durationMs: Math.round(performance.now() - started),
    });
  }

  async hasArtifact(ref: ArtifactRef): Promise<boolean> {
    const dir = this.artifactDir(ref);
    const [bootstrap, entry] = await Promise.all([
      fs.stat(path.join(dir, BOOTSTRAP_FILE)).catch(() => null),
      fs.stat(path.join(dir, ENTRY_FILE)).catch(() => null),
    ]);
    return Boolean(bootstrap?.isFile() && entry?.isFile());
  }

  async removeArtifact(ref: ArtifactRef): Promise<void> {
    const dir = this.artifactDir(ref);
    await fs.rm(dir, { recursive: true, force: true });
    try {
      await fs.rmdir(path.dirname(dir));
    } catch {
      // other versions (or a build in progress) are still there, or it is already gone
    }
  }

  async close(): Promise<void> {}
}

/** Moves `from` to `to` (a rename when on the same filesystem), else copies it, symlinks as symlinks. */
async function moveOrCopy(from: string, to: string): Promise<void> {
  try {
    await fs.rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fs.cp(from, to, { recursive: true, verbatimSymlinks: true, errorOnExist: true, force: false });
  }
}

/** Puts `tmp` at `dest`, replacing a leftover of an earlier attempt. */
async function replaceDir(tmp: string, dest: string): Promise<void> {
  try {
    await fs.rename(tmp, dest);
    return;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
  const old = `${tmp}.old`;
  await fs.rename(dest, old);
  await fs.rename(tmp, dest);
  await fs.rm(old, { recursive: true, force: true });
}
