// `npm test`: runs every suite, the integration suites once per database, and ends with the plain
// line "N passed, N failed" summed over all of them. Exit code 1 when anything failed.
//
//   tests/unit/*.test.ts   run once (no database)
//   tests/*.test.ts        run with TEST_DB=sqlite and TEST_DB=postgres
//
// Options (env): TEST_DBS=sqlite,postgres  TEST_JOBS=2  TEST_FILTER=<substring>[,<substring>…]  TEST_FILE_TIMEOUT_MS
//   TEST_TSX=1: run the files under tsx instead of from their bundles (support/bundle.ts)
//   TEST_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": node options for the bundled test files
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUNDLES_ENV, bundleForNode, CLI_ENTRY } from './support/bundle.ts';
import { inCI, postgresAvailable } from './support/services.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const filter = process.env.TEST_FILTER ?? process.argv[2] ?? '';
const jobs = Math.max(1, Number(process.env.TEST_JOBS ?? 2));
const fileTimeoutMs = Number(process.env.TEST_FILE_TIMEOUT_MS ?? 10 * 60_000);

interface Run {
  file: string;
  db: string | null;
}
interface Outcome extends Run {
  passed: number;
  failed: number;
  skipped: number;
  ms: number;
  output: string;
}

const list = (dir: string) =>
  fs.existsSync(dir)
    ? fs.readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort().map((f) => path.join(dir, f))
    : [];

const stripAnsi = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

/** The processes the suites start by the hundred, bundled with the test files (support/bundle.ts). */
const CHILD_ENTRIES = [
  'runner/main.ts',
  'api/main.ts',
  'scripts/cleanup.ts',
  'scripts/start.ts',
  'scripts/users.ts',
  // bench-smoke: the bench, and the servers it starts (a dozen a run)
  'scripts/bench/main.ts',
  'scripts/bench/server.ts',
  'scripts/bench/floor-server.ts',
  'scripts/bench/http-floor-server.ts',
];

/** Where each test file's bundle is, or null to run the files under tsx. */
let bundles: { dir: string; files: Map<string, string> } | null = null;

function runFile(run: Run): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const bundle = bundles?.files.get(path.relative(root, run.file));
    const args = bundle ? [...((process.env.TEST_NODE_ARGS ?? '').split(' ').filter(Boolean)), '--enable-source-maps', bundle] : ['--import', 'tsx', run.file];
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, ...(run.db ? { TEST_DB: run.db } : {}), ...(bundles ? { [BUNDLES_ENV]: bundles.dir } : {}), FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[run] killed after ${fileTimeoutMs} ms\n`;
      child.kill('SIGKILL');
    }, fileTimeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      const text = stripAnsi(output);
      const total = Number(/Total:\s+(\d+)/.exec(text)?.[1] ?? NaN);
      const passed = Number(/Passed:\s+(\d+)/.exec(text)?.[1] ?? NaN);
      const skipped = Number(/Skipped:\s+(\d+)/.exec(text)?.[1] ?? 0);
      let outcome: Outcome;
      if (Number.isNaN(total) || Number.isNaN(passed)) {
        // No uvu summary: a crash before or after the tests (or a deliberate skip with exit 0).
        const skippedFile = code === 0 && /^SKIP:/m.test(text);
        outcome = { ...run, passed: 0, failed: skippedFile ? 0 : 1, skipped: skippedFile ? 1 : 0, ms: 0, output };
      } else {
        // uvu counts skipped tests apart: Total is what ran, Passed of those
        const failed = total - passed + (code !== 0 && total === passed ? 1 : 0);
        outcome = { ...run, passed, failed, skipped, ms: 0, output };
      }
      outcome.ms = Date.now() - started;
      resolve(outcome);
    });
  });
}

async function main() {
  const dbs = (process.env.TEST_DBS ?? 'sqlite,postgres').split(',').map((s) => s.trim()).filter(Boolean);
  const activeDbs: string[] = [];
  for (const db of dbs) {
    if (db === 'postgres') {
      const why = await postgresAvailable();
      if (why) {
        if (inCI) {
          console.log(`PostgreSQL is required under CI=true and is not reachable: ${why}`);
          console.log('0 passed, 1 failed');
          process.exit(1);
        }
        console.log(`SKIP: PostgreSQL not reachable (${why}); its pass is skipped. Run scripts/setup-services.sh.`);
        continue;
      }
    }
    activeDbs.push(db);
  }

  const runs: Run[] = [
    ...list(path.join(here, 'unit')).map((file) => ({ file, db: null })),
    ...activeDbs.flatMap((db) => list(here).map((file) => ({ file, db }))),
  ].filter((r) => filter.split(',').some((f) => r.file.includes(f)));

  if (!process.env.TEST_TSX && runs.length > 0) {
    const dir = path.join(root, '.tmp', `test-bundles-${process.pid}`);
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    const files = [...new Set(runs.map((r) => path.relative(root, r.file)))];
    // both settled before a failure exits (and removes the directory): esbuild writes the files itself
    const [built, cli] = await Promise.allSettled([
      bundleForNode({ entryPoints: [...files, ...CHILD_ENTRIES], outdir: dir }),
      bundleForNode({ entryPoints: [CLI_ENTRY], outdir: dir, bundlePackages: true }),
    ]);
    if (built.status === 'rejected') throw built.reason;
    if (cli.status === 'rejected') throw cli.reason;
    bundles = { dir, files: built.value.bundles };
  }

  const outcomes: Outcome[] = [];
  let next = 0;
  async function worker() {
    while (next < runs.length) {
      const run = runs[next++]!;
      const o = await runFile(run);
      outcomes.push(o);
      const label = `${path.relative(root, o.file)}${o.db ? ` [${o.db}]` : ''}`;
      const status = o.failed > 0 ? 'FAIL' : o.skipped > 0 && o.passed === 0 ? 'SKIP' : 'ok  ';
      console.log(`${status} ${label}: ${o.passed} passed, ${o.failed} failed (${(o.ms / 1000).toFixed(1)} s)`);
      if (o.failed > 0 || process.env.TEST_VERBOSE) console.log(o.output.replace(/^/gm, '    | '));
    }
  }
  const started = Date.now();
  await Promise.all(Array.from({ length: Math.min(jobs, runs.length) }, worker));
  const passed = outcomes.reduce((n, o) => n + o.passed, 0);
  const failed = outcomes.reduce((n, o) => n + o.failed, 0);
  console.log(`\n${outcomes.length} suite runs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const skipped = outcomes.reduce((n, o) => n + o.skipped, 0);
  console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
  process.exit(failed > 0 ? 1 : 0);
}

await main();
