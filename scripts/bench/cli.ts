// `npm run bench -- [--scenario NAME[,NAME]] [--db sqlite,postgres] [--smoke] [--out PATH]`
import { SCENARIOS, type ScenarioName } from './types.ts';
import type { DbKind } from './harness.ts';

export interface BenchArgs {
  scenarios: ScenarioName[];
  dbs: DbKind[];
  smoke: boolean;
  /** undefined: docs/benchmarks.json (full) or a temporary file (smoke) */
  out?: string;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [options]

  --scenario NAME   run only this scenario (repeatable, or a comma list):
                    ${SCENARIOS.join(', ')} (invoke: the old name of warm)
  --db LIST         sqlite, postgres or both (default: sqlite,postgres; PostgreSQL is skipped
                    with a note when it does not answer, except under CI=true)
  --smoke           tiny sizes, finishes in well under a minute (what CI runs); writes to a
                    temporary file unless --out is given, never to docs/benchmarks.json
  --out PATH        where the JSON results go (default: docs/benchmarks.json)
  --help            this text

environment: BENCH_DATABASE_URL (else TEST_DATABASE_URL) names the PostgreSQL server; the role
must be allowed to CREATE DATABASE. FUNCTION_BASE_IMAGE as for the platform.`;

export class UsageError extends Error {}

/**
 * Names that still work: `invoke` measured a cold process or container per call until invocations
 * moved to warm instances; `warm` replaced it, so the old name runs the new scenario.
 */
const ALIASES: Record<string, ScenarioName> = { invoke: 'warm' };

export function parseArgs(argv: string[]): BenchArgs {
  const scenarios: ScenarioName[] = [];
  let dbs: DbKind[] | undefined;
  let smoke = false;
  let out: string | undefined;
  let help = false;
  const list = (value: string | undefined, flag: string) => {
    if (value === undefined || value.startsWith('--')) throw new UsageError(`${flag} needs a value`);
    return value.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--scenario':
      case '--scenarios':
        for (const given of list(value(), flag)) {
          const name = ALIASES[given] ?? given;
          if (!(SCENARIOS as readonly string[]).includes(name)) {
            throw new UsageError(`unknown scenario "${name}"; one of ${SCENARIOS.join(', ')}`);
          }
          if (!scenarios.includes(name as ScenarioName)) scenarios.push(name as ScenarioName);
        }
        break;
      case '--db':
        dbs = [];
        for (const name of list(value(), flag)) {
          const kind = name === 'pg' || name === 'postgresql' ? 'postgres' : name;
          if (kind !== 'sqlite' && kind !== 'postgres') throw new UsageError(`unknown database "${name}"; sqlite or postgres`);
          if (!dbs.includes(kind)) dbs.push(kind);
        }
        break;
      case '--smoke':
        smoke = true;
        break;
      case '--out': {
        const v = value();
        if (!v) throw new UsageError('--out needs a path');
        out = v;
        break;
      }
      case '--help':
      case '-h':
        help = true;
        break;
      default:
        throw new UsageError(`unknown option ${arg}`);
    }
  }
  return {
    // in the order, whatever order they were given in
    scenarios: scenarios.length === 0 ? [...SCENARIOS] : SCENARIOS.filter((s) => scenarios.includes(s)),
    dbs: dbs ?? ['sqlite', 'postgres'],
    smoke,
    out,
    help,
  };
}
