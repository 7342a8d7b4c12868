// `npm run bench`: the platform's published numbers. Each scenario measures a figure on SQLite
// and on PostgreSQL, and in the same run the floor it is compared with; the results are printed as
// a table and written as JSON. See docs/benchmarks.md for what bounds each figure.
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../shared/config.ts';
import { parseArgs, USAGE, UsageError, type BenchArgs } from './cli.ts';
import { dockerUnavailable } from './docker.ts';
import { inCI, postgresUnavailable, repoRoot, startServer, type BenchServer, type DbKind } from './harness.ts';
import { describeMachine } from './machine.ts';
import { allRows, markdownTable, mergeInto, readDocument, writeDocument, fmtDuration, type BenchDocument, type ScenarioResult } from './report.ts';
import { serverOptions, type ServerKey } from './servers.ts';
import { FULL, SMOKE, type Sizes } from './sizes.ts';
import type { Context, Scenario, ScenarioName } from './types.ts';
import { rollback } from './scenarios/rollback.ts';
import { deploy } from './scenarios/deploy.ts';
import { e2e } from './scenarios/e2e.ts';
import { pickup } from './scenarios/pickup.ts';
import { warm } from './scenarios/warm.ts';
import { cleanup } from './scenarios/cleanup.ts';
import { history } from './scenarios/history.ts';
import { http } from './scenarios/http.ts';

const ALL: Record<ScenarioName, Scenario> = { rollback, deploy, e2e, pickup, warm, cleanup, history, http };
const DOCS_JSON = path.join(repoRoot, 'docs', 'benchmarks.json');

/** A service the run needs is missing where that is a failure (CI): said in one line, no stack. */
class ServiceMissing extends Error {}

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

/** Servers of one database, one per configuration, shared by the scenarios that ask for the same one. */
class ServerPool {
  private readonly servers = new Map<string, Promise<BenchServer>>();

  constructor(private readonly sizes: Sizes) {}

  get(db: DbKind, key: ServerKey): Promise<BenchServer> {
    const id = `${db}:${key}`;
    let server = this.servers.get(id);
    if (!server) {
      log(`starting a ${db} server (${key})`);
      server = startServer({ db, ...serverOptions(key, this.sizes) });
      // a start that fails is reported by the scenario that awaits it
      server.catch(() => {});
      this.servers.set(id, server);
    }
    return server;
  }

  /** Stops every server; returns the error lines they logged (a benchmark that errs must say so). */
  async closeAll(): Promise<string[]> {
    const all = [...this.servers.entries()];
    this.servers.clear();
    const errors: string[] = [];
    await Promise.all(
      all.map(async ([id, started]) => {
        const server = await started.catch(() => null);
        if (!server) return;
        await server.close();
        const lines = server.output().split('\n').filter((l) => /"level":"error"/.test(l));
        if (lines.length) errors.push(`the ${id} server logged ${lines.length} error(s), the first: ${lines[0]!.slice(0, 400)}`);
      }),
    );
    return errors;
  }
}

async function main(args: BenchArgs): Promise<number> {
  const started = performance.now();
  const sizes = args.smoke ? SMOKE : FULL;
  const out = path.resolve(args.out ?? (args.smoke ? path.join(os.tmpdir(), `containerpub-bench-smoke-${process.pid}.json`) : DOCS_JSON));
  if (args.smoke && out === DOCS_JSON) throw new UsageError('--smoke never writes docs/benchmarks.json: give another --out');

  const notes: string[] = [];
  const fatal = (what: string, why: string) => {
    throw new ServiceMissing(`${what} is required under CI=true but is not available: ${why}`);
  };
  const dbs: DbKind[] = [];
  for (const db of args.dbs) {
    if (db === 'postgres') {
      const why = await postgresUnavailable();
      if (why) {
        if (inCI) fatal('PostgreSQL', why);
        notes.push(`PostgreSQL skipped: it does not answer (${why}); set BENCH_DATABASE_URL or run scripts/setup-services.sh`);
        log(notes.at(-1)!);
        continue;
      }
    }
    dbs.push(db);
  }
  if (dbs.length === 0) throw new Error('no database to run on');

  const needsDocker = args.scenarios.some((s) => s === 'e2e' || s === 'warm' || s === 'http');
  const baseImage = loadConfig(process.env).runtime.baseImage;
  const dockerWhy = await dockerUnavailable(baseImage);
  if (needsDocker && dockerWhy) {
    if (inCI) fatal('The Docker engine', dockerWhy);
    notes.push(`docker driver parts skipped: ${dockerWhy}; run scripts/setup-services.sh`);
    log(notes.at(-1)!);
  }
  const machine = await describeMachine({ docker: dockerWhy === null, postgres: dbs.includes('postgres') });

  const results: Partial<Record<ScenarioName, ScenarioResult>> = {};
  let failed = 0;
  const cleanupAll: (() => Promise<unknown>)[] = [];
  process.once('SIGINT', () => {
    log('interrupted: stopping the servers');
    void Promise.all(cleanupAll.map((c) => c())).finally(() => process.exit(130));
  });

  for (const db of dbs) {
    const pool = new ServerPool(sizes);
    cleanupAll.push(() => pool.closeAll());
    // every server this database's scenarios need, started at once (each takes ~2 s, mostly loading modules)
    const dockerHere =
      dockerWhy ?? (sizes.dockerDbs.includes(db) ? null : `measured on ${sizes.dockerDbs.join(' and ')} only in ${args.smoke ? 'the smoke run' : 'this run'}`);
    for (const name of args.scenarios) for (const key of ALL[name].servers(db, dockerHere === null)) void pool.get(db, key);
    try {
      for (const name of args.scenarios) {
        const scenario = ALL[name];
        const entry = (results[name] ??= { title: scenario.title, ranAt: new Date().toISOString(), durationMs: 0, rows: [], notes: [] });
        const ctx: Context = {
          sizes,
          smoke: args.smoke,
          dockerUnavailable: dockerHere,
          server: (d, key) => pool.get(d, key),
          log,
          note: (message) => {
            if (!entry.notes.includes(message)) entry.notes.push(message);
          },
        };
        const t0 = performance.now();
        try {
          entry.rows.push(...(await scenario.run(ctx, db)));
        } catch (err) {
          failed++;
          const message = `${name}/${db} FAILED: ${(err as Error).stack ?? String(err)}`;
          entry.notes.push(message.split('\n')[0]!);
          log(message);
        }
        entry.durationMs += performance.now() - t0;
        log(`${name}/${db} done in ${fmtDuration(performance.now() - t0)}`);
      }
    } finally {
      for (const line of await pool.closeAll()) {
        notes.push(line);
        log(line);
      }
    }
  }

  const doc: BenchDocument = {
    schema: 1,
    generatedAt: new Date().toISOString(),
    smoke: args.smoke,
    command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { ...machine, loadAverageAtEnd: Math.round(os.loadavg()[0]! * 100) / 100 },
    sizes,
    totalMs: performance.now() - started,
    scenarios: results,
    notes,
  };
  const partial = args.scenarios.length < Object.keys(ALL).length || dbs.length < 2;
  const written = partial ? mergeInto(readDocument(out), doc, { scenarios: args.scenarios, dbs }) : doc;
  writeDocument(out, written);

  const rows = allRows(doc);
  process.stdout.write(`\n${markdownTable(rows)}\n\n`);
  for (const name of args.scenarios) for (const n of results[name]?.notes ?? []) process.stdout.write(`note (${name}): ${n}\n`);
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
  const errors = rows.reduce((acc, r) => acc + r.errors.non2xx + r.errors.transport, 0);
  if (errors > 0) process.stdout.write(`WARNING: ${errors} requests failed (see the errors column): these figures are not clean\n`);
  process.stdout.write(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}, Node ${machine.node}` +
      `${machine.docker ? `, Docker ${machine.docker.version} (${machine.docker.storageDriver})` : ''}` +
      `${machine.postgres ? `, PostgreSQL ${machine.postgres}` : ''}, SQLite ${machine.sqlite}\n`,
  );
  process.stdout.write(`total ${fmtDuration(doc.totalMs)}; results written to ${path.relative(process.cwd(), out) || out}\n`);
  return failed > 0 || errors > 0 ? 1 : 0;
}

let args: BenchArgs;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
main(args).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n\n${USAGE}\n`);
      process.exit(2);
    }
    if (err instanceof ServiceMissing) {
      process.stderr.write(`bench: ${err.message}\n`);
      process.exit(1);
    }
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
