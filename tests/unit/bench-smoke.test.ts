// The bench's smoke variant (`npm run bench -- --smoke`, seconds) runs every scenario end to end
// and reports clean numbers; the full bench is never run in CI. Plus the bench's pure parts.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseArgs, UsageError } from '../../scripts/bench/cli.ts';
import type { BenchDocument } from '../../scripts/bench/report.ts';
import { mergeInto } from '../../scripts/bench/report.ts';
import { percentile, summarize } from '../../scripts/bench/stats.ts';
import { warmUntilSettled, type LoadResult } from '../../scripts/bench/load.ts';
import { SCENARIOS, type ResultRow } from '../../scripts/bench/types.ts';
import { dockerAvailable, inCI, postgresAvailable } from '../support/services.ts';
import { nodeArgsFor } from '../support/bundle.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SMOKE_TIMEOUT_MS = 150_000;

test('percentiles are exact nearest-rank over every sample', () => {
  const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted
  assert.is(percentile([...samples].sort((a, b) => a - b), 0.5), 50);
  const s = summarize(samples);
  assert.equal([s.n, s.p50, s.p95, s.p99, s.min, s.max], [100, 50, 95, 99, 1, 100]);
  assert.is(summarize([7]).p99, 7);
  assert.is(summarize([1, 2, 3]).p50, 2);
});

test('the command line: scenarios in the issue order, databases, smoke, out, the old invoke name', () => {
  const all = parseArgs([]);
  assert.equal(all.scenarios, [...SCENARIOS]);
  assert.equal(all.dbs, ['sqlite', 'postgres']);
  assert.is(all.smoke, false);
  const some = parseArgs(['--scenario', 'history', '--scenario=rollback,deploy', '--db', 'pg', '--smoke', '--out', '/tmp/x.json']);
  assert.equal(some.scenarios, ['rollback', 'deploy', 'history']);
  assert.equal(some.dbs, ['postgres']);
  assert.is(some.smoke, true);
  assert.is(some.out, '/tmp/x.json');
  // `invoke` (one cold start per call) was replaced by `warm`: the old name runs the new scenario
  assert.equal(parseArgs(['--scenario', 'invoke,history']).scenarios, ['warm', 'history']);
  assert.throws(() => parseArgs(['--scenario', 'nope']), (e: unknown) => e instanceof UsageError && /unknown scenario/.test((e as Error).message));
  assert.throws(() => parseArgs(['--db', 'mysql']), (e: unknown) => e instanceof UsageError);
  assert.throws(() => parseArgs(['--out']), (e: unknown) => e instanceof UsageError);
  assert.throws(() => parseArgs(['--fast']), (e: unknown) => e instanceof UsageError);
});

test('a partial run replaces only the rows it measured', () => {
  const row = (scenario: ResultRow['scenario'], db: ResultRow['db'], variant: string) =>
    ({ scenario, db, variant }) as ResultRow;
  const doc = (rows: ResultRow[], cpuModel = 'cpu'): BenchDocument =>
    ({
      schema: 1,
      smoke: false,
      machine: { cpuModel, cores: 2 },
      scenarios: Object.fromEntries(SCENARIOS.map((s) => [s, { rows: rows.filter((r) => r.scenario === s), notes: [] }])),
      notes: [],
    }) as unknown as BenchDocument;
  const old = doc([row('rollback', 'sqlite', 'old'), row('rollback', 'postgres', 'old'), row('history', 'sqlite', 'old')]);
  const fresh = doc([row('rollback', 'sqlite', 'new')]);
  fresh.scenarios = { rollback: fresh.scenarios.rollback };
  const merged = mergeInto(old, fresh, { scenarios: ['rollback'], dbs: ['sqlite'] });
  assert.equal(merged.scenarios.rollback!.rows.map((r) => `${r.db}:${r.variant}`).sort(), ['postgres:old', 'sqlite:new']);
  assert.equal(merged.scenarios.history!.rows.map((r) => r.variant), ['old']);
  // rows of a scenario the bench no longer has (the per-call invoke) are not kept
  const withGone = doc([row('rollback', 'sqlite', 'old')]);
  (withGone.scenarios as Record<string, unknown>).invoke = { rows: [row('rollback', 'sqlite', 'gone')], notes: [] };
  assert.not.ok('invoke' in mergeInto(withGone, fresh, { scenarios: ['rollback'], dbs: ['sqlite'] }).scenarios);
  // another machine's results are not mixed in
  assert.equal(Object.keys(mergeInto(doc([], 'other'), fresh, { scenarios: ['rollback'], dbs: ['sqlite'] }).scenarios), ['rollback']);
});

test('the warm-up runs until the rate stops climbing, within its bound, and fails on a failed request', async () => {
  // rounds whose first load has these rates (what a fresh server does: climbing, then flat)
  const rounds = (rates: number[], fail = -1) => {
    let i = 0;
    const calls = { n: 0 };
    const round = async (): Promise<LoadResult[]> => {
      calls.n++;
      const rps = rates[Math.min(i, rates.length - 1)]!;
      const failed = i++ === fail;
      const statuses: Record<string, number> = failed ? { '500': 1 } : { '200': 1 };
      const load: LoadResult = { latencies: [1], stat: summarize([1]), statuses, non2xx: failed ? 1 : 0, transportErrors: 0, wallMs: 1, rps, cpu: { serverCores: null, benchCores: 0 } };
      return [load, { ...load, rps: 99_999 }];
    };
    return { round, calls };
  };
  const climbing = rounds([1000, 1700, 2200, 2300, 2350, 2400]);
  assert.equal(await warmUntilSettled(climbing.round, { maxRounds: 15 }), [1000, 1700, 2200, 2300, 2350], 'stops once the last two rounds are each within 10 % of the one before');
  const flatAtOnce = rounds([2000, 2050, 1990]);
  assert.equal((await warmUntilSettled(flatAtOnce.round, { maxRounds: 15 })).length, 3, 'three rounds at least: two comparisons');
  const noisy = rounds([1000, 2000, 1000, 2000, 1000, 2000, 1000]);
  assert.equal((await warmUntilSettled(noisy.round, { maxRounds: 6 })).length, 6, 'bounded: never more than maxRounds');
  const oneDip = rounds([1000, 1500, 1000, 1500, 1500, 1500]);
  assert.equal(await warmUntilSettled(oneDip.round, { maxRounds: 15 }), [1000, 1500, 1000, 1500, 1500, 1500]);
  const failing = rounds([1000, 1100, 1150], 1);
  await warmUntilSettled(failing.round, { maxRounds: 15 }).then(
    () => assert.unreachable('a failed request during the warm-up fails it'),
    (err: Error) => assert.match(err.message, /warm-up failed.*500/),
  );
  assert.equal(failing.calls.n, 2, 'it stops at the round that failed');
});

function runSmoke(out: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeArgsFor('scripts/bench/main.ts'), '--smoke', '--out', out], {
      cwd: root,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[test] killed after ${SMOKE_TIMEOUT_MS} ms\n`;
      child.kill('SIGTERM');
    }, SMOKE_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

test('the smoke bench: every scenario, numeric percentiles and floors, no failed request', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'containerpub-bench-smoke-'));
  const out = path.join(dir, 'bench.json');
  try {
    const [pgWhy, dockerWhy] = await Promise.all([postgresAvailable(), dockerAvailable()]);
    const started = Date.now();
    const { code, output } = await runSmoke(out);
    assert.is(code, 0, `the smoke bench exited ${code}:\n${output.slice(-6000)}`);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as BenchDocument;
    assert.is(doc.smoke, true);
    assert.ok(doc.machine.cores > 0 && doc.machine.cpuModel && doc.machine.node, 'the machine is described');

    const pg = pgWhy === null || inCI;
    const docker = dockerWhy === null || inCI;
    if (!pg) assert.ok(doc.notes.some((n) => /PostgreSQL skipped/.test(n)), 'a missing PostgreSQL is said, not silent');
    assert.not.ok(doc.notes.some((n) => /server logged/.test(n)), `the servers logged errors: ${doc.notes.join('; ')}`);
    for (const name of SCENARIOS) {
      const entry = doc.scenarios[name];
      assert.ok(entry, `scenario ${name} is in the JSON`);
      assert.ok(entry.rows.length > 0, `scenario ${name} has results`);
      assert.not.ok(entry.notes.some((n) => /FAILED/.test(n)), `${name}: ${entry.notes.join('; ')}`);
      const dbs = new Set(entry.rows.map((r) => r.db));
      assert.ok(dbs.has('sqlite'), `${name} ran on SQLite`);
      if (pg) assert.ok(dbs.has('postgres'), `${name} ran on PostgreSQL`);
      for (const r of entry.rows) {
        const what = `${name}/${r.db}/${r.variant}`;
        assert.is(r.errors.non2xx + r.errors.transport, 0, `${what}: ${JSON.stringify(r.errors)}`);
        assert.ok(r.n > 0 && finite(r.durationMs), `${what}: n and time`);
        if (name !== 'cleanup') {
          assert.ok(finite(r.p50) && finite(r.p95) && finite(r.p99), `${what}: p50/p95/p99 are numbers`);
          assert.ok(r.p50! <= r.p95! && r.p95! <= r.p99!, `${what}: percentiles in order`);
        }
        if (!/dry run/.test(r.variant)) {
          assert.ok(r.floors.length > 0, `${what}: measured against a floor`);
          for (const f of r.floors) assert.ok(f.stat ? finite(f.stat.p50) && finite(f.stat.p99) : finite(f.ms), `${what}: floor ${f.label}`);
        }
      }
    }
    for (const name of ['e2e', 'warm', 'http'] as const) {
      const dockerRows = doc.scenarios[name]!.rows.filter((r) => /docker/.test(r.variant));
      if (docker) assert.ok(dockerRows.length > 0, `${name} measured the docker driver`);
      else assert.ok(doc.notes.some((n) => /docker driver parts skipped/.test(n)), 'a missing Docker engine is said, not silent');
    }
    // warm invocations: both levels of clients and a cold start per driver measured, and the
    // instance accounting adds up (every request served by an instance the API listed)
    const warmRows = doc.scenarios.warm!.rows;
    for (const driver of docker ? ['process', 'docker'] : ['process']) {
      for (const kind of ['warm, 1 client', 'warm, 16 clients', 'cold start']) {
        assert.ok(warmRows.some((r) => r.variant.startsWith(`${driver} driver, ${kind}`)), `warm measured ${driver}: ${kind}`);
      }
    }
    for (const r of warmRows.filter((r) => /, warm, /.test(r.variant))) {
      const instances = (r.details as { instances: { accountingComplete: boolean; requests: number; servedByListedInstances: number } }).instances;
      assert.ok(instances.accountingComplete, `${r.db}/${r.variant}: ${JSON.stringify(instances)}`);
      assert.ok(r.throughput && r.floors[0]!.throughput, `${r.db}/${r.variant}: throughput beside the floor's`);
    }
    // function endpoints: public at both levels of clients and key access, per driver, each
    // beside its floor's throughput, with the targets evaluated
    const httpRows = doc.scenarios.http!.rows;
    for (const driver of docker ? ['process', 'docker'] : ['process']) {
      for (const kind of ['public, 1 client', 'public, 16 clients', 'key access (X-Function-Key), 1 client']) {
        assert.ok(httpRows.some((r) => r.variant === `${driver} driver, ${kind}`), `http measured ${driver}: ${kind}`);
      }
    }
    for (const r of httpRows) {
      assert.ok(r.throughput && r.floors[0]!.throughput, `${r.db}/${r.variant}: throughput beside the floor's`);
      const targets = (r.details as { targets: { met: unknown }[] }).targets;
      assert.ok(targets.length > 0 && targets.every((t) => typeof t.met === 'boolean'), `${r.db}/${r.variant}: target evaluated`);
    }
    assert.ok(doc.scenarios.pickup!.rows.some((r) => /NOTIFY/.test(r.variant)) || !pg, 'pickup measured NOTIFY');
    assert.ok(/\| scenario \| db/.test(output), 'the table is printed');
    process.stderr.write(`[bench-smoke] the smoke bench took ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
