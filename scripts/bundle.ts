// Our TypeScript entry points bundled for a plain `node` by esbuild: the installed `containerpub`
// command (scripts/cli/cli-bundle.ts) and the processes the tests start by the hundred
// (tests/support/bundle.ts). A process that loads its TypeScript through tsx's loader hooks spends
// far more CPU starting (the CLI: 0.60 s against 0.16 s; a platform process ~2 s more) than one
// that loads a bundle.
//
// The bundles run the same code: esbuild is what transpiles it under tsx too. What a bundle would
// change, this keeps: each module's `import.meta.url`, `.dirname` and `.filename` stay its own
// file's (they locate package.json, the dashboard's assets, the bootstrap of function processes),
// and packages stay in node_modules, loaded by Node as they are under tsx (`bundlePackages` bundles
// them too, for the CLI, whose dependencies are all plain JavaScript).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import esbuild, { type Metafile, type Plugin } from 'esbuild';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

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
export async function bundleForNode(opts: BundleOptions): Promise<{ bundles: Map<string, string>; metafile: Metafile }> {
  const result = await esbuild.build({
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
    metafile: true,
    absWorkingDir: repoRoot,
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
  return { bundles: new Map(opts.entryPoints.map((e) => [e, bundlePath(opts.outdir, e)])), metafile: result.metafile };
}

export function bundlePath(outdir: string, entry: string): string {
  return path.join(outdir, entry.replace(/\.ts$/, '.mjs'));
}

