// The runtime driver: how a validated, unpacked function becomes runnable (build) and how one
// invocation runs (invoke). Two implementations: docker (dockerode) and process (a child Node
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

export interface InvokeInput extends ArtifactRef {
  deploymentId: string;
  requestId: string;
  event: unknown;
  timeoutMs: number;
}

export type InvokeOutcome =
  | { ok: true; result: unknown; logs: string; durationMs: number }
  | { ok: false; kind: 'error' | 'timeout'; message: string; logs: string; durationMs: number };

export interface RuntimeDriver {
  readonly name: 'docker' | 'process';
  build(input: BuildInput): Promise<BuildResult>;
  invoke(input: InvokeInput): Promise<InvokeOutcome>;
  /** whether the built artifact (image or unpacked directory) is still there */
  hasArtifact(ref: ArtifactRef): Promise<boolean>;
  /** removes the artifact everywhere it lives (engine and registry, or the directory); idempotent */
  removeArtifact(ref: ArtifactRef): Promise<void>;
  close(): Promise<void>;
}

export class BuildError extends Error {}
