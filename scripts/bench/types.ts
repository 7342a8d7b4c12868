// What a scenario measures and how it reports it.
import type { BenchServer, DbKind } from './harness.ts';
import type { ServerKey } from './servers.ts';
import type { Sizes } from './sizes.ts';
import type { Stat } from './stats.ts';

export const SCENARIOS = ['rollback', 'deploy', 'e2e', 'pickup', 'warm', 'cleanup', 'history', 'http'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** What the figure is compared with, measured in the same run. */
export interface Floor {
  label: string;
  /** a distribution (ms) … */
  stat?: Stat;
  /** … or one duration (ms) */
  ms?: number;
  throughput?: Throughput;
}

export interface Throughput {
  value: number;
  unit: string;
}

export interface ResultRow {
  scenario: ScenarioName;
  db: DbKind | 'none';
  variant: string;
  /** samples behind the percentiles (requests, runs) or items processed */
  n: number;
  /** ms; null where a distribution does not apply (one cleanup run) */
  p50: number | null;
  p95: number | null;
  p99: number | null;
  mean: number | null;
  max: number | null;
  /** wall time of the measured part, ms */
  durationMs: number;
  throughput: Throughput | null;
  /** failed requests: non-2xx answers and connection errors/timeouts */
  errors: { non2xx: number; transport: number; statuses?: Record<string, number> };
  floors: Floor[];
  /** scenario-specific facts (cleanup's summary counts, …) */
  details?: Record<string, unknown>;
}

export interface Context {
  sizes: Sizes;
  smoke: boolean;
  /** docker parts run only when this is null */
  dockerUnavailable: string | null;
  /** the server of this configuration for `db`, shared by the scenarios that need the same one */
  server(db: DbKind, key: ServerKey): Promise<BenchServer>;
  /** a line of progress on stderr */
  log(message: string): void;
  /** a remark printed with the results and kept in the JSON */
  note(message: string): void;
}

export interface Scenario {
  name: ScenarioName;
  title: string;
  /** the servers it uses on `db` (started ahead, all at once) */
  servers(db: DbKind, dockerAvailable: boolean): ServerKey[];
  run(ctx: Context, db: DbKind): Promise<ResultRow[]>;
}

/** A row from a latency distribution. */
export function latencyRow(
  base: Pick<ResultRow, 'scenario' | 'db' | 'variant'>,
  stat: Stat,
  durationMs: number,
  more: Partial<Omit<ResultRow, 'scenario' | 'db' | 'variant'>> = {},
): ResultRow {
  return {
    ...base,
    n: stat.n,
    p50: stat.p50,
    p95: stat.p95,
    p99: stat.p99,
    mean: stat.mean,
    max: stat.max,
    durationMs,
    throughput: null,
    errors: { non2xx: 0, transport: 0 },
    floors: [],
    ...more,
  };
}

export const clients = (n: number) => `${n} client${n === 1 ? '' : 's'}`;

/** How a note says whether a figure met its target. */
export const verdict = (met: boolean) => (met ? 'met' : 'MISSED');
