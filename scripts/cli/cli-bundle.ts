// The bundle the installed `containerpub` command runs (bin.js): the CLI and its packages in one
// esbuild bundle, ~0.16 s of CPU a command where loading the sources under tsx costs ~0.6 s. bin.js
// runs it while every file it was made from is unchanged (their mtimes, in inputs.json), and calls
// this to make a new one when one changed or none was made yet.
//
// In the cache directory: one directory per build, and `current` naming the one to run. A build
// is written whole in its own directory, then `current` is swapped by a rename: a command never
// loads half a bundle, and two commands building at once each finish theirs (the last one's wins).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { bundleForNode, bundlePath, repoRoot } from '../bundle.ts';

/** The CLI's entry point (bin.js finds its bundle at scripts/cli/main.mjs in a build's directory). */
export const CLI_ENTRY = 'scripts/cli/main.ts';
/** Builds older than this (and not current) are removed: a command started from one may still load its lazy chunks. */
const OLD_BUILD_MS = 60 * 60_000;

/** What bin.js reads: each file the bundle was made from (relative to the repository) and its mtime. */
export interface CliBundleInputs {
  inputs: Record<string, number>;
}

/** Makes a bundle of the CLI in `cacheDir` and makes it the current one; returns its path. */
export async function buildCliBundle(cacheDir: string): Promise<string> {
  fs.mkdirSync(cacheDir, { recursive: true });
  const id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const dir = path.join(cacheDir, id);
  const started = Date.now();
  const { metafile } = await bundleForNode({ entryPoints: [CLI_ENTRY], outdir: dir, bundlePackages: true });
  const inputs: CliBundleInputs = { inputs: {} };
  for (const file of Object.keys(metafile.inputs)) {
    // esbuild's own inputs (a plugin's namespace) are not files
    const absolute = path.resolve(repoRoot, file);
    if (!fs.existsSync(absolute)) continue;
    const mtimeMs = fs.statSync(absolute).mtimeMs;
    // saved during the build, it may be in the bundle as it was before: -1 never matches, so the
    // next command builds again
    inputs.inputs[path.relative(repoRoot, absolute)] = mtimeMs >= started ? -1 : mtimeMs;
  }
  fs.writeFileSync(path.join(dir, 'inputs.json'), JSON.stringify(inputs));
  const pointer = path.join(cacheDir, `current.${id}.tmp`);
  fs.writeFileSync(pointer, id);
  fs.renameSync(pointer, path.join(cacheDir, 'current'));
  removeOldBuilds(cacheDir, id);
  return bundlePath(dir, CLI_ENTRY);
}

function removeOldBuilds(cacheDir: string, keep: string): void {
  for (const name of fs.readdirSync(cacheDir)) {
    const entry = path.join(cacheDir, name);
    try {
      if (name === keep || name === 'current' || Date.now() - fs.statSync(entry).mtimeMs < OLD_BUILD_MS) continue;
      fs.rmSync(entry, { recursive: true, force: true });
    } catch {
      // another command removed it first
    }
  }
}
