// Instances of the process driver: each one a child `node` process running the bootstrap in the
// version's unpacked directory, in its own process group, with only PATH and the instance's
// variables in its environment. For development without Docker: no isolation (see process-driver).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { BOOTSTRAP_FILE, instanceEnv, type RuntimeLogger } from './protocol.ts';
import {
  InstanceLog,
  checkSocketDir,
  createInstanceDir,
  orphanedInstanceDirs,
  removeInstanceDir,
  socketPathFor,
} from './instance.ts';
import type { InstanceBackend, InstanceExit, InstanceSpec, RunningInstance } from './types.ts';

export interface ProcessInstancesOptions {
  /** INSTANCE_DIR: one directory per instance, holding its socket */
  instanceDir: string;
  /** the unpacked directory of a version (checked to exist by the caller) */
  artifactDir(spec: InstanceSpec): string;
  logger?: RuntimeLogger;
}

export class ProcessInstances implements InstanceBackend {
  constructor(private readonly opts: ProcessInstancesOptions) {
    checkSocketDir(opts.instanceDir);
  }

  async start(spec: InstanceSpec): Promise<RunningInstance> {
    const cwd = this.opts.artifactDir(spec);
    const dir = createInstanceDir(this.opts.instanceDir, spec.instanceId);
    const socketPath = socketPathFor(this.opts.instanceDir, spec.instanceId);
    const log = new InstanceLog();
    const child = spawn(process.execPath, [`--max-old-space-size=${spec.memoryMb}`, BOOTSTRAP_FILE], {
      cwd,
      // only PATH and the instance's context: the platform's own environment (database URL, keys)
      // stays out
      env: {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        ...(spec.env ?? {}),
        ...instanceEnv({ ...spec, socketPath }),
        // so that an instance whose parent died before it even started still ends itself
        CONTAINERPUB_PARENT_PID: String(process.pid),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // its own process group, so a kill takes whatever the function spawned too
      detached: true,
    });
    child.stdout.on('data', (chunk: Buffer) => log.write(chunk));
    child.stderr.on('data', (chunk: Buffer) => log.write(chunk));
    const exited = new Promise<InstanceExit>((resolve) => {
      child.once('error', (err) => {
        log.write(`${err.message}\n`);
        resolve({ code: null, signal: null, oomKilled: false });
      });
      child.once('exit', (code, signal) => resolve({ code, signal, oomKilled: false }));
    });
    if (child.pid !== undefined) {
      fs.writeFileSync(`${dir}/pid`, String(child.pid));
    }
    let killed: Promise<void> | null = null;
    const kill = () =>
      (killed ??= (async () => {
        killGroup(child.pid);
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000).unref())]);
        // whatever the function left running in its group goes with it
        killGroup(child.pid);
        removeInstanceDir(this.opts.instanceDir, spec.instanceId);
      })());
    // a process that ends by itself frees its directory too
    void exited.then(() => {
      killGroup(child.pid);
      if (!killed) removeInstanceDir(this.opts.instanceDir, spec.instanceId);
    });
    return { id: spec.instanceId, socketPath, exited, log: () => log.text(), kill };
  }

  async sweepOrphans(): Promise<number> {
    let swept = 0;
    for (const orphan of orphanedInstanceDirs(this.opts.instanceDir)) {
      let pid = NaN;
      try {
        pid = Number(fs.readFileSync(`${orphan.dir}/pid`, 'utf8').trim());
      } catch {
        // it died before it had a pid
      }
      // only when the pid is still that instance: a recycled pid belongs to someone else
      if (Number.isInteger(pid) && isInstanceProcess(pid, orphan.id)) {
        killGroup(pid);
        swept++;
      }
      removeInstanceDir(this.opts.instanceDir, orphan.id);
    }
    if (swept > 0) this.opts.logger?.warn('stopped instance processes left by a platform process that died', { count: swept });
    return swept;
  }
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Whether `pid` runs the instance `id` (its environment names it). */
function isInstanceProcess(pid: number, id: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`CONTAINERPUB_INSTANCE_ID=${id}`);
  } catch {
    return false;
  }
}
