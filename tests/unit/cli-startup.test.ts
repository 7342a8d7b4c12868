// What the CLI and the platform's processes load to start. Every command pays for its whole static import graph, ~650 times a
// test pass and at every keystroke of a user's script. zod was ~0.75 MB of the bundled CLI's 1 MB
// (0.07 s of a command's 0.21 s; 0.1 s of a command under tsx), for two checks: containerpub.json,
// which only deploy and watch read (they load it on demand), and a tag's name (a zod-free rule).
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

test.run();
