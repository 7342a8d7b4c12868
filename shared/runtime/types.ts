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
  /** aborted when the runner loses its lease or shuts down */
  signal: AbortSignal;
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

export class BuildError extends Error {}
