// The runtime driver: how a validated, unpacked function becomes runnable (build) and how its
// long-lived instances are started (instances). Two implementations: docker (dockerode) and process (a child Node
// process, for development without Docker).

/** What the unpacked archive holds, as decided by shared/archive/detect.ts. */
export type FunctionKind =
  | { kind: 'node'; entry: string } // entry: path of the handler module relative to the root
  | { kind: 'dockerfile' };

export interface BuildInput {
  functionId: string;
  deploymentId: string;
  version: number;
  /** the validated, unpacked archive (a temporary directory the driver may move or read) */
  sourceDir: string;
  function: FunctionKind;
  /** one line of build output for build_logs */
  log(line: string): void;
  /** aborted when the runner loses its lease, shuts down, or the build runs over BUILD_TIMEOUT_MS */
  signal: AbortSignal;
  /**
   * The function's dependencies, installed at build time by `npm ci` (shared/runtime/dependencies.ts)
   * when the archive has a package.json with dependencies, a lockfile and no node_modules; null
   * otherwise. The driver puts `nodeModulesDir` at <root>/node_modules of the version: the docker
   * driver as its own image layer (same key, same layer digest), the process driver as a copy.
   */
  dependencies?: InstalledDependencies | null;
}

export interface InstalledDependencies {
  /** absolute path of an installed node_modules directory (read-only: it is a shared cache entry) */
  nodeModulesDir: string;
  /** sha256 (hex) of what decides the install: the lockfile, package.json's dependencies, node's major version */
  key: string;
}

export interface BuildResult {
  /** the image tag (docker) or null (process) */
  imageTag: string | null;
}

export interface ArtifactRef {
  functionId: string;
  version: number;
  imageTag: string | null;
}

/** What an instance runs: one built version, with its limits. */
export interface InstanceSpec extends ArtifactRef {
  deploymentId: string;
  /** unique per instance; names its socket directory, container and log lines */
  instanceId: string;
  /** its memory limit (the container's, or Node's heap for the process driver) */
  memoryMb: number;
  /** the version's own environment variables (secrets opened); CONTAINERPUB_* are the platform's */
  env?: Record<string, string>;
  /**
   * none: loopback only (containers); outbound: the FUNCTION_NETWORK Docker network. The process
   * driver cannot isolate a child process: its instances always have the host's network.
   */
  network?: 'none' | 'outbound';
}

export interface InstanceExit {
  /** null when it was killed by a signal (or the engine did not say) */
  code: number | null;
  signal?: string | null;
  /** it went over its memory limit (the engine said so, or Node's heap ran out) */
  oomKilled: boolean;
}

/** A started instance (a container or a child process), serving the protocol on its socket. */
export interface RunningInstance {
  readonly id: string;
  /** the socket as this process reaches it */
  readonly socketPath: string;
  /** settles once the instance is gone, however it went */
  readonly exited: Promise<InstanceExit>;
  /** the tail of what it printed on stdout and stderr, bounded */
  log(): string;
  /** kills it and frees what it held (container, socket directory); idempotent */
  kill(): Promise<void>;
}

/** Starts instances of built versions: one class per driver (containers, child processes). */
export interface InstanceBackend {
  /** Starts one instance; resolves once it runs (not yet ready: see instance.ts waitReady). */
  start(spec: InstanceSpec): Promise<RunningInstance>;
  /** Removes instances left by platform processes that died without stopping them; how many. */
  sweepOrphans(): Promise<number>;
}

export interface RuntimeDriver {
  readonly name: 'docker' | 'process';
  build(input: BuildInput): Promise<BuildResult>;
  readonly instances: InstanceBackend;
  /**
   * A configuration change: makes version `to` runnable from the artifact of an earlier built
   * version (a new tag of the same image, or a copy of the unpacked directory) without building.
   * Each version still owns its artifact, so cleanup can remove one without touching the other.
   */
  cloneArtifact(from: ArtifactRef, to: { functionId: string; version: number }, log: (line: string) => void): Promise<BuildResult>;
  /** whether the built artifact (image or unpacked directory) is still there */
  hasArtifact(ref: ArtifactRef): Promise<boolean>;
  /** removes the artifact everywhere it lives (engine and registry, or the directory); idempotent */
  removeArtifact(ref: ArtifactRef): Promise<void>;
  close(): Promise<void>;
}

/** The function's own build failed (a bad archive, a failing Dockerfile step, npm's error): it counts as an attempt. */
export class BuildError extends Error {}

/**
 * A service the build needs is unreachable or failing (S3, the registry, the Docker engine, the
 * npm registry): not the function's fault. The build waits and tries again without spending an
 * attempt, for up to BUILD_TIMEOUT_MS.
 */
export class InfrastructureError extends Error {
  constructor(
    readonly service: 's3' | 'registry' | 'engine' | 'npm',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'InfrastructureError';
  }
}
