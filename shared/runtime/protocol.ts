// The instance protocol both drivers speak, and custom Dockerfile images must speak too:
//   - the platform starts the instance with the CONTAINERPUB_* environment variables below; the
//     instance serves HTTP/1.1 on the Unix socket CONTAINERPUB_SOCKET names (a per-instance
//     directory, mounted into the container: it works with no network at all);
//   - readiness: `GET /ready` answers 200 once the function is loaded; until then the platform
//     retries, for up to FUNCTION_START_TIMEOUT_MS;
//   - an invocation: `POST /invoke` with the JSON event as the body and the request id in
//     `X-ContainerPub-Request-Id`; the answer is 200 with {"ok": true, "result": <JSON>, "logs": "…"}
//     or {"ok": false, "error": "<message>", "logs": "…"} (logs are optional);
//   - the instance serves many invocations, up to the version's concurrency at once, and may keep
//     state between them; it is stopped (SIGKILL) when idle, and whatever it prints on stdout and
//     stderr is its log.
// For Node functions the platform adds its bootstrap (bootstrap/bootstrap.mjs) as
// <root>/.containerpub/bootstrap.mjs, with <root>/.containerpub/entry.json naming the handler module.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildError } from './types.ts';

export const BOOTSTRAP_DIR = '.containerpub';
export const BOOTSTRAP_FILE = `${BOOTSTRAP_DIR}/bootstrap.mjs`;
export const ENTRY_FILE = `${BOOTSTRAP_DIR}/entry.json`;

/** The bootstrap's source in this repository. */
export const BOOTSTRAP_SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bootstrap', 'bootstrap.mjs');

export interface RuntimeLogger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

/** The built artifact of a version is gone (image removed, directory deleted): rebuild or fail. */
export class ArtifactMissingError extends Error {}

/** Where the instance's socket directory is mounted in a container. */
export const CONTAINER_SOCKET_DIR = '/run/containerpub';
/** The socket's name inside the instance's directory. */
export const SOCKET_NAME = 'fn.sock';
export const REQUEST_ID_HEADER = 'x-containerpub-request-id';

/** The environment of an instance (the only variables a function receives besides PATH). */
export function instanceEnv(input: {
  functionId: string;
  version: number;
  deploymentId: string;
  instanceId: string;
  socketPath: string;
}): Record<string, string> {
  return {
    CONTAINERPUB_FUNCTION_ID: input.functionId,
    CONTAINERPUB_VERSION: String(input.version),
    CONTAINERPUB_DEPLOYMENT_ID: input.deploymentId,
    CONTAINERPUB_INSTANCE_ID: input.instanceId,
    CONTAINERPUB_SOCKET: input.socketPath,
  };
}

/**
 * The handler's path, checked to stay inside the function root: entry.json is read by code running
 * with the function's rights, but the platform writes it, so it must never point elsewhere.
 */
export function normalizeEntry(entry: string): string {
  const normalized = path.posix.normalize(entry.replace(/\\/g, '/')).replace(/^\.\//, '');
  if (normalized === '' || normalized === '.' || path.posix.isAbsolute(normalized) || normalized.startsWith('../')) {
    throw new Error(`the entry "${entry}" is not a path inside the function`);
  }
  return normalized;
}

/** The entry, normalized, once checked to be a file of the unpacked function; else a BuildError. */
export async function checkEntry(sourceDir: string, entry: string): Promise<string> {
  let normalized: string;
  try {
    normalized = normalizeEntry(entry);
  } catch (err) {
    throw new BuildError((err as Error).message);
  }
  const stat = await fs.promises.stat(path.join(sourceDir, normalized)).catch(() => null);
  if (!stat?.isFile()) throw new BuildError(`the entry module ${normalized} is not in the archive`);
  return normalized;
}

let bootstrapCache: Buffer | null = null;

/** The two files the platform adds to a Node function, by path relative to the function root. */
export function bootstrapFiles(entry: string): { path: string; content: Buffer }[] {
  bootstrapCache ??= fs.readFileSync(BOOTSTRAP_SOURCE);
  return [
    { path: BOOTSTRAP_FILE, content: bootstrapCache },
    { path: ENTRY_FILE, content: Buffer.from(JSON.stringify({ entry: normalizeEntry(entry) }) + '\n') },
  ];
}
