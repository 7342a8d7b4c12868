// The invocation protocol both drivers speak (and custom Dockerfile images must speak):
//   - the event: ONE JSON document written on the function's stdin, which is then closed;
//   - the result: the LAST non-empty line of stdout, as JSON, with exit code 0;
//   - a failure: a non-zero exit; the message is the last non-empty line of stderr;
//   - the context: the CONTAINERPUB_* environment variables below.
// For Node functions the platform adds its bootstrap (bootstrap/bootstrap.mjs) as
// <root>/.containerpub/bootstrap.mjs, with <root>/.containerpub/entry.json naming the handler module.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildError, type InvokeInput } from './types.ts';

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

/** The context of one invocation, as environment variables (the only ones a function receives). */
export function invocationEnv(input: Pick<InvokeInput, 'functionId' | 'version' | 'deploymentId' | 'requestId'>): Record<string, string> {
  return {
    CONTAINERPUB_FUNCTION_ID: input.functionId,
    CONTAINERPUB_VERSION: String(input.version),
    CONTAINERPUB_DEPLOYMENT_ID: input.deploymentId,
    CONTAINERPUB_REQUEST_ID: input.requestId,
  };
}

/** The event as the bytes written on stdin; `undefined` travels as null. */
export function encodeEvent(event: unknown): string {
  const text = JSON.stringify(event ?? null);
  return text === undefined ? 'null' : text;
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
