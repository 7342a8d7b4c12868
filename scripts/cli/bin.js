#!/usr/bin/env node
// The `containerpub` executable (package.json "bin"). It runs the CLI from a bundle
// (cli-bundle.ts: ~0.16 s of CPU a command) while every file the bundle was made from is
// unchanged. Otherwise it runs the TypeScript sources under tsx (~0.6 s), as it always did, and
// makes a new bundle first for the commands that follow: after an edit in a clone, an `npm ci`, or
// on the first run. A bundle that cannot be made (a read-only install) changes nothing but speed.
//
// CONTAINERPUB_CLI_CACHE: where the bundles are kept (default node_modules/.cache/containerpub-cli
// in the installation); "off" runs the sources every time.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const cache = process.env.CONTAINERPUB_CLI_CACHE || path.join(root, 'node_modules', '.cache', 'containerpub-cli');

/** The current bundle, when every file it was made from still has the mtime it had then. */
function freshBundle() {
  try {
    const dir = path.join(cache, fs.readFileSync(path.join(cache, 'current'), 'utf8').trim());
    const { inputs } = JSON.parse(fs.readFileSync(path.join(dir, 'inputs.json'), 'utf8'));
    for (const [file, mtimeMs] of Object.entries(inputs)) {
      if (fs.statSync(path.join(root, file)).mtimeMs !== mtimeMs) return null;
    }
    // CLI_ENTRY's bundle (cli-bundle.ts); this file is plain JavaScript and cannot import it
    const bundle = path.join(dir, 'scripts', 'cli', 'main.mjs');
    return fs.existsSync(bundle) ? bundle : null;
  } catch {
    return null; // none yet, or a file it was made from is gone
  }
}

const bundle = cache === 'off' ? null : freshBundle();
if (bundle) {
  await import(pathToFileURL(bundle).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  if (cache !== 'off') {
    try {
      const { buildCliBundle } = await import('./cli-bundle.ts');
      await buildCliBundle(cache);
    } catch (err) {
      // only slower: this command runs from the sources all the same
      if (process.env.CONTAINERPUB_DEBUG) process.stderr.write(`containerpub: no CLI bundle (${err.message})\n`);
    }
  }
  await import('./main.ts');
}
