// What the CLI and the platform's processes load to start. Every command pays for its whole static import graph, ~650 times a
// test pass and at every keystroke of a user's script. zod was ~0.75 MB of the bundled CLI's 1 MB
// (0.07 s of a command's 0.21 s; 0.1 s of a command under tsx), for two checks: containerpub.json,
// which only deploy and watch read (they load it on demand), and a tag's name (a zod-free rule).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import esbuild from 'esbuild';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CLI_ENTRY, repoRoot } from '../support/bundle.ts';

/** The CLI bundled with code splitting: what its start loads, and what it imports on demand. */
async function cliImportGraph() {
  const result = await esbuild.build({
    entryPoints: [path.join(repoRoot, CLI_ENTRY)],
    outdir: '/cli-startup', // nothing is written
    write: false,
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    metafile: true,
    logLevel: 'silent',
  });
  const outputs = result.metafile.outputs;
  const entry = Object.keys(outputs).find((o) => outputs[o]!.entryPoint?.endsWith(CLI_ENTRY));
  assert.ok(entry, 'the CLI entry is among the outputs');
  const reach = (from: string[], follow: (kind: string) => boolean) => {
    const seen = new Set<string>();
    const todo = [...from];
    while (todo.length > 0) {
      const out = todo.pop()!;
      if (seen.has(out)) continue;
      seen.add(out);
      for (const i of outputs[out]!.imports) if (!i.external && follow(i.kind)) todo.push(i.path);
    }
    return seen;
  };
  const inputsOf = (outs: Set<string>) => [...outs].flatMap((o) => Object.keys(outputs[o]!.inputs));
  const atStart = reach([entry!], (kind) => kind === 'import-statement');
  const everything = reach([entry!], () => true);
  const startBytes = [...atStart].reduce((n, o) => n + outputs[o]!.bytes, 0);
  const startInputs = new Set(inputsOf(atStart));
  return { atStart: [...startInputs], onDemand: inputsOf(everything).filter((i) => !startInputs.has(i)), startBytes };
}

test('the CLI starts without zod; containerpub.json loads it on demand', async () => {
  const { atStart, onDemand, startBytes } = await cliImportGraph();
  const zod = (inputs: string[]) => inputs.filter((i) => i.includes('node_modules/zod/'));
  assert.equal(zod(atStart), [], 'zod is in the static import graph of the CLI');
  assert.ok(zod(onDemand).length > 0, 'containerpub.json is still checked with zod, loaded when a command reads it');
  // A budget, not a measurement: the start is the CLI's own code and a few small packages (tar-stream,
  // ignore, chokidar: ~0.3 MB). A new import that doubles it should be a decision, not an accident.
  assert.ok(startBytes < 600_000, `the CLI's start loads ${startBytes} bytes of bundled code`);
});

/**
 * The packages a process's entry loads at start (static imports of the bundled entry, packages
 * left external as tests/support/bundle.ts leaves them), and the ones it imports on demand.
 */
async function packagesAtStart(entry: string) {
  const result = await esbuild.build({
    entryPoints: [path.join(repoRoot, entry)],
    outfile: '/platform-startup/out.mjs', // nothing is written
    write: false,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    metafile: true,
    logLevel: 'silent',
  });
  const imports = Object.values(result.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.external));
  const pkg = (p: string) => (p.startsWith('@') ? p.split('/').slice(0, 2).join('/') : p.split('/')[0]!);
  return {
    atStart: new Set(imports.filter((i) => i.kind === 'import-statement').map((i) => pkg(i.path))),
    onDemand: new Set(imports.filter((i) => i.kind === 'dynamic-import').map((i) => pkg(i.path))),
  };
}

test('platform processes start without dockerode and s3rver: loaded when an engine or the embedded S3 is used', async () => {
  // ~0.2 s (dockerode with its gRPC session support) and ~0.15 s (s3rver, koa) of each start: of
  // `npm start`, the API, the runner, every cleanup run, and the hundreds a test pass spawns
  for (const entry of ['api/main.ts', 'runner/main.ts', 'scripts/cleanup.ts', 'scripts/start.ts']) {
    const { atStart, onDemand } = await packagesAtStart(entry);
    assert.ok(atStart.has('knex'), `${entry}: the check sees its packages`);
    for (const heavy of ['dockerode', 's3rver']) assert.not.ok(atStart.has(heavy), `${entry} loads ${heavy} at start`);
    assert.ok(onDemand.has('s3rver'), `${entry}: the embedded S3 is still there, imported when started`);
  }
});

test('the installed command runs from a bundle it makes once, and makes again when a file it was made from changed', () => {
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-cli-cache-'));
  const bin = (env: Record<string, string> = {}) => {
    const r = spawnSync(process.execPath, [path.join(repoRoot, 'scripts/cli/bin.js'), '--help'], {
      env: { PATH: process.env.PATH ?? '', HOME: cache, CONTAINERPUB_CLI_CACHE: cache, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.is(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /^containerpub — deploy, version and run functions/);
    return r;
  };
  const current = () => fs.readFileSync(path.join(cache, 'current'), 'utf8');
  try {
    bin(); // none yet: runs the sources, and makes the bundle
    const first = current();
    const inputsFile = path.join(cache, first, 'inputs.json');
    const inputs = JSON.parse(fs.readFileSync(inputsFile, 'utf8')).inputs as Record<string, number>;
    assert.ok('scripts/cli/main.ts' in inputs && Object.keys(inputs).some((f) => f.startsWith('node_modules/')), 'the sources and the packages it bundles');
    bin();
    assert.is(current(), first, 'unchanged files: the same bundle, not another build');
    // and it is the bundle that runs, not the sources
    const bundled = path.join(cache, first, 'scripts/cli/main.mjs');
    const made = fs.readFileSync(bundled);
    fs.writeFileSync(bundled, "console.log('containerpub — deploy, version and run functions (the bundle ran)');\n");
    assert.match(bin().stdout, /\(the bundle ran\)/);
    fs.writeFileSync(bundled, made);
    // a file it was made from changed since (as an edit or an `npm ci` would): made again
    fs.writeFileSync(inputsFile, JSON.stringify({ inputs: { ...inputs, 'scripts/cli/format.ts': inputs['scripts/cli/format.ts']! - 1000 } }));
    bin();
    assert.is.not(current(), first, 'a changed file: a new bundle');
    assert.ok(fs.existsSync(path.join(cache, current(), 'scripts/cli/main.mjs')));
    // no bundle possible (the cache is under a file): the sources, and the command still works
    bin({ CONTAINERPUB_CLI_CACHE: path.join(inputsFile, 'below-a-file') });
    bin({ CONTAINERPUB_CLI_CACHE: 'off' });
  } finally {
    fs.rmSync(cache, { recursive: true, force: true });
  }
});

test.run();
