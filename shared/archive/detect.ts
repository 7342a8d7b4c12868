// Decides what an unpacked archive is: a Dockerfile project, or a Node handler module and where its
// entry point is. Refusals are ArchiveErrors, shown to the user in the build log.
import { lstat, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import type { FunctionKind } from '../runtime/types.ts';
import { ArchiveError } from './extract.ts';

const NO_HANDLER =
  'no handler found: expected package.json "main", index.js or index.mjs at the archive root, or a Dockerfile';

/** `root` is the effective root (see functionRoot in extract.ts). */
export async function detectFunction(root: string): Promise<FunctionKind> {
  const realRoot = await realpath(root);
  if (await isFileInside(realRoot, 'Dockerfile')) return { kind: 'dockerfile' };

  if (await isFileInside(realRoot, 'package.json')) {
    const main = await readMain(realRoot);
    if (main !== undefined) return { kind: 'node', entry: await resolveMain(realRoot, main) };
  }
  for (const candidate of ['index.js', 'index.mjs']) {
    if (await isFileInside(realRoot, candidate)) return { kind: 'node', entry: candidate };
  }
  throw new ArchiveError(NO_HANDLER);
}

async function readMain(root: string): Promise<string | undefined> {
  const text = await readFile(path.join(root, 'package.json'), 'utf8');
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (err) {
    throw new ArchiveError(`package.json is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof manifest !== 'object' || manifest === null || Array.isArray(manifest)) {
    throw new ArchiveError('package.json must contain a JSON object');
  }
  const main = (manifest as { main?: unknown }).main;
  if (main === undefined || main === null) return undefined;
  if (typeof main !== 'string') throw new ArchiveError(`package.json "main" must be a string, not ${JSON.stringify(main)}`);
  return main;
}

/** The way Node resolves "main": as given, then with .js / .mjs, then as a directory's index. */
async function resolveMain(root: string, main: string): Promise<string> {
  const shown = `package.json "main" (${JSON.stringify(main)})`;
  if (path.posix.isAbsolute(main) || path.win32.isAbsolute(main)) {
    throw new ArchiveError(`${shown} must be a path relative to the archive root`);
  }
  const normalized = path.posix.normalize(main.replaceAll('\\', '/')).replace(/\/+$/, '');
  if (normalized === '..' || normalized.startsWith('../')) throw new ArchiveError(`${shown} points outside the archive`);

  const base = normalized === '.' ? '' : normalized;
  const candidates = base === '' ? ['index.js', 'index.mjs'] : [base, `${base}.js`, `${base}.mjs`, `${base}/index.js`, `${base}/index.mjs`];
  for (const candidate of candidates) {
    if (await isFileInside(root, candidate)) return candidate;
  }
  if (await escapesThroughSymlink(root, base)) throw new ArchiveError(`${shown} points outside the archive`);
  throw new ArchiveError(`${shown} does not exist in the archive (also tried .js, .mjs, /index.js and /index.mjs)`);
}

/** A regular file whose real location (after any symlinks) is inside root. */
async function isFileInside(root: string, rel: string): Promise<boolean> {
  let real: string;
  try {
    real = await realpath(path.join(root, rel));
  } catch {
    return false;
  }
  if (!isWithin(root, real)) return false;
  return (await lstat(real)).isFile();
}

async function escapesThroughSymlink(root: string, rel: string): Promise<boolean> {
  if (rel === '') return false;
  try {
    return !isWithin(root, await realpath(path.join(root, rel)));
  } catch {
    return false;
  }
}

function isWithin(root: string, target: string): boolean {
  const relative = path.relative(root, target);
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}
