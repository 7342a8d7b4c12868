// Our TypeScript entry points bundled for a plain `node` (esbuild), for the processes the tests
// start by the hundred: each test file, and the runner, API, cleanup and CLI processes some of
// them start. Under `--import tsx`, Node 20 sends every module (node_modules' too) through tsx's loader
// hooks, on a thread of their own: a process that loads the platform spent ~2 s of CPU more
// starting that way than from a bundle, on this 2-core machine where the suite is CPU-bound.
//
// The bundles run the same code: esbuild is what transpiles it under tsx too. What a bundle would
// change, this keeps: each module's `import.meta.url`, `.dirname` and `.filename` stay its own
// file's (they locate package.json, the dashboard's assets, the bootstrap of function processes),
// and packages stay in node_modules, loaded by Node as they are under tsx (`bundlePackages` bundles
// them too, for the CLI, whose dependencies are all plain JavaScript).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import esbuild, { type Plugin } from 'esbuild';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Set by tests/run.ts: where it bundled every entry point of the run (test files, runner, API, cleanup, CLI). */
export const BUNDLES_ENV = 'CONTAINERPUB_TEST_BUNDLES';

/** the CLI, whose packages (plain JavaScript) are bundled with it: they load ~0.13 s of CPU faster a run */
export const CLI_ENTRY = 'scripts/cli/main.ts';

/** `import.meta.url`, `.dirname` and `.filename` as code (not quoted: this file's own strings stay) */
const IMPORT_META = /(?<![\w'"`.])import\.meta\.(url|dirname|filename)\b/g;

/** Each TypeScript module keeps its own import.meta.url, .dirname and .filename inside a bundle. */
const ownImportMeta: Plugin = {
  name: 'own-import-meta',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, (args) => {
      const own = { url: pathToFileURL(args.path).href, dirname: path.dirname(args.path), filename: args.path };
      const contents = fs.readFileSync(args.path, 'utf8').replace(IMPORT_META, (_, which: keyof typeof own) => JSON.stringify(own[which]));
      return { contents, loader: 'ts' };
    });
  },
};

export interface BundleOptions {
  /** paths relative to the repository */
  entryPoints: string[];
  /** the bundles mirror the entry points' paths under it, as .mjs */
  outdir: string;
  /** bundle the packages too (else they load from node_modules) */
  bundlePackages?: boolean;
}

/** Bundles the entry points (one build); returns each entry's bundle, by its repository path. */
export async function bundleForNode(opts: BundleOptions): Promise<Map<string, string>> {
  await esbuild.build({
    entryPoints: opts.entryPoints.map((e) => path.join(repoRoot, e)),
    outbase: repoRoot,
    outdir: opts.outdir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // a failing test's stack points at the TypeScript (node --enable-source-maps)
    sourcemap: 'linked',
    logLevel: 'error',
    plugins: [ownImportMeta],
    ...(opts.bundlePackages
      ? {
          // for the CommonJS packages inside an ES module bundle (`['url']`: not rewritten by ownImportMeta)
          banner: { js: "import { createRequire as bundleRequire } from 'node:module'; const require = bundleRequire(import.meta['url']);" },
          // What is imported on demand (the CLI's zod) goes to a chunk of its own, loaded when it is
          // asked for: in the entry's file it would be parsed by every run.
          splitting: true,
          chunkNames: 'chunks/[name]-[hash]',
        }
      : { packages: 'external' as const }),
  });
  return new Map(opts.entryPoints.map((e) => [e, bundlePath(opts.outdir, e)]));
}

export function bundlePath(outdir: string, entry: string): string {
  return path.join(outdir, entry.replace(/\.ts$/, '.mjs'));
}

/**
 * `node` arguments that run one of the entry points tests/run.ts bundles (CHILD_ENTRIES there, and
 * scripts/cli/main.ts): its bundle from tests/run.ts, or the TypeScript under
 * tsx for a test file run on its own. Stacks point at the TypeScript (source maps), except the
 * CLI's: it runs some 650 times a full pass, and source maps cost each run 0.05 s of its 0.2 s of
 * CPU; its errors are messages, not stacks.
 */
export function nodeArgsFor(entry: string): string[] {
  const dir = process.env[BUNDLES_ENV];
  const bundle = dir ? bundlePath(dir, entry) : null;
  if (!bundle || !fs.existsSync(bundle)) return ['--import', 'tsx', path.join(repoRoot, entry)];
  return entry === CLI_ENTRY ? [bundle] : ['--enable-source-maps', bundle];
}
