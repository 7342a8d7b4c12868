// The process driver: a version is an unpacked directory under DATA_DIR/artifacts, and each
// instance a child `node` process of the serving process. For development without Docker only.
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ProcessInstances } from './process-instances.ts';
import { ArtifactMissingError, BOOTSTRAP_DIR, BOOTSTRAP_FILE, ENTRY_FILE, bootstrapFiles, checkEntry, type RuntimeLogger } from './protocol.ts';
import {
  BuildError,
  type ArtifactRef,
  type BuildInput,
  type BuildResult,
  type InstalledDependencies,
  type InstanceBackend,
  type RuntimeDriver,
} from './types.ts';

export const PROCESS_DRIVER_WARNING =
  'RUNTIME_DRIVER=process runs functions as plain child processes of the platform: no filesystem, network, ' +
  'CPU or process isolation, memory bounded only by the V8 heap limit. Use it for development, never for untrusted code.';

export interface ProcessDriverOptions {
  /** DATA_DIR/artifacts */
  artifactsDir: string;
  /** INSTANCE_DIR: a directory per running instance, for its socket */
  instanceDir: string;
  logger?: RuntimeLogger;
}

export class ProcessDriver implements RuntimeDriver {
  readonly name = 'process' as const;
  private readonly artifactsDir: string;
  readonly instances: InstanceBackend;

  constructor(opts: ProcessDriverOptions) {
    this.artifactsDir = path.resolve(opts.artifactsDir);
    opts.logger?.warn(PROCESS_DRIVER_WARNING, { driver: 'process' });
    this.instances = new ProcessInstances({
      instanceDir: path.resolve(opts.instanceDir),
      logger: opts.logger,
      artifactDir: (spec) => {
        const dir = this.artifactDir(spec);
        if (!fsSync.existsSync(`${dir}/${ENTRY_FILE}`)) {
          throw new ArtifactMissingError(`the files of ${spec.functionId} v${spec.version} are missing (${dir})`);
        }
        return dir;
      },
    });
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
      if (input.dependencies) await copyDependencies(input.dependencies, tmp, input.log);
      checkAborted();
      const placed = await placeVersionDir(tmp, dest, () => this.hasArtifact({ ...input, imageTag: null }));
      if (placed === 'kept') input.log(`process driver: ${dest} was already complete (an earlier attempt): kept as it is`);
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
    input.log(`process driver: version ${input.version} ready (no image; runs as a child process)`);
    return { imageTag: null };
  }

  async cloneArtifact(from: ArtifactRef, to: { functionId: string; version: number }, log: (line: string) => void): Promise<BuildResult> {
    if (!(await this.hasArtifact(from))) throw new ArtifactMissingError(`version ${from.version}'s unpacked function is gone`);
    const source = this.artifactDir(from);
    const dest = this.artifactDir(to);
    const tmp = path.join(path.dirname(dest), `.v${to.version}.tmp-${randomBytes(4).toString('hex')}`);
    try {
      await fs.cp(source, tmp, { recursive: true, verbatimSymlinks: true });
      await placeVersionDir(tmp, dest, () => this.hasArtifact({ ...to, imageTag: null }));
    } catch (err) {
      await fs.rm(tmp, { recursive: true, force: true });
      throw err;
    }
    log(`process driver: copied version ${from.version}'s unpacked function to ${dest} (no build)`);
    return { imageTag: null };
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

/**
 * The installed dependencies at <version>/node_modules. The install is a cache entry other builds
 * share: it is copied (a reflink where the filesystem can), never moved, and a function writing
 * into its node_modules cannot change another version's.
 */
async function copyDependencies(deps: InstalledDependencies, dir: string, log: (line: string) => void): Promise<void> {
  const dest = path.join(dir, 'node_modules');
  if (fsSync.existsSync(dest)) {
    // installDependencies installs nothing when the archive ships node_modules: theirs stays
    log('process driver: the archive ships node_modules; the installed dependencies are not copied');
    return;
  }
  const started = Date.now();
  await fs.cp(deps.nodeModulesDir, dest, { recursive: true, verbatimSymlinks: true, mode: fsSync.constants.COPYFILE_FICLONE });
  log(`process driver: copied the dependencies (${deps.key.slice(0, 12)}) into node_modules in ${Date.now() - started} ms`);
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

/**
 * Puts `tmp` at `dest`. A version's files are immutable (one verified archive), so a complete
 * directory already there stays, and ours is discarded: a runner that lost its lease and finishes
 * late, or a retry after a crash, never removes files a live instance runs from. Only an incomplete
 * leftover (no bootstrap) is replaced.
 */
async function placeVersionDir(tmp: string, dest: string, isComplete: () => Promise<boolean>): Promise<'placed' | 'kept'> {
  try {
    await fs.rename(tmp, dest);
    return 'placed';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
  }
  if (await isComplete()) {
    await fs.rm(tmp, { recursive: true, force: true });
    return 'kept';
  }
  const old = `${tmp}.old`;
  await fs.rename(dest, old);
  await fs.rename(tmp, dest);
  await fs.rm(old, { recursive: true, force: true });
  return 'placed';
}
