// The results as a table (Markdown, so it can be pasted into docs/benchmarks.md) and as JSON.
import fs from 'node:fs';
import path from 'node:path';
import type { Machine } from './machine.ts';
import type { Sizes } from './sizes.ts';
import { SCENARIOS, type Floor, type ResultRow, type ScenarioName } from './types.ts';

export interface ScenarioResult {
  title: string;
  ranAt: string;
  /** wall time of the scenario (all databases, seeding and floors included), ms */
  durationMs: number;
  rows: ResultRow[];
  notes: string[];
}

export interface BenchDocument {
  schema: 1;
  generatedAt: string;
  smoke: boolean;
  command: string;
  machine: Machine;
  sizes: Sizes;
  /** wall time of the whole run, ms */
  totalMs: number;
  scenarios: Partial<Record<ScenarioName, ScenarioResult>>;
  notes: string[];
}

export function fmtMs(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return Math.round(v).toLocaleString('en-US');
}

export function fmtDuration(ms: number): string {
  if (ms < 1000) return `${fmtMs(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function fmtRate(t: { value: number; unit: string } | null | undefined): string {
  if (!t) return '–';
  const v = t.value < 10 ? t.value.toFixed(1) : Math.round(t.value).toLocaleString('en-US');
  return `${v} ${t.unit}`;
}

export function fmtFloor(f: Floor): string {
  const rate = f.throughput ? `, ${fmtRate(f.throughput)}` : '';
  if (f.stat) return `${fmtMs(f.stat.p50)} / ${fmtMs(f.stat.p95)} / ${fmtMs(f.stat.p99)} ms${rate} (${f.label})`;
  if (f.ms !== undefined) return `${fmtDuration(f.ms)}${rate} (${f.label})`;
  return f.label;
}

function fmtErrors(r: ResultRow): string {
  const total = r.errors.non2xx + r.errors.transport;
  if (total === 0) return '0';
  const codes = Object.entries(r.errors.statuses ?? {})
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, count]) => `${count}×${code}`);
  if (r.errors.transport) codes.push(`${r.errors.transport}×conn`);
  return `**${total}** (${codes.join(', ')})`;
}

export const TABLE_HEADER = ['scenario', 'db', 'variant', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'time', 'throughput', 'errors', 'floor: p50 / p95 / p99 or time'];

export function tableRows(rows: ResultRow[]): string[][] {
  return rows.map((r) => [
    r.scenario,
    r.db === 'none' ? '–' : r.db,
    r.variant,
    r.n.toLocaleString('en-US'),
    fmtMs(r.p50),
    fmtMs(r.p95),
    fmtMs(r.p99),
    fmtDuration(r.durationMs),
    fmtRate(r.throughput),
    fmtErrors(r),
    r.floors.length ? r.floors.map(fmtFloor).join('; ') : '–',
  ]);
}

/** A Markdown table, columns padded so it also reads well in a terminal. */
export function markdownTable(rows: ResultRow[]): string {
  const body = tableRows(rows);
  const cells = [TABLE_HEADER, ...body].map((r) => r.map((c) => c.replace(/\|/g, '\\|')));
  const widths = TABLE_HEADER.map((_, i) => Math.min(60, Math.max(...cells.map((r) => r[i]!.length))));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(cells[0]!), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

/** Every row of the document, in the scenario order. */
export function allRows(doc: BenchDocument): ResultRow[] {
  return SCENARIOS.flatMap((s) => doc.scenarios[s]?.rows ?? []);
}

/**
 * A partial run (some scenarios, or one database) written to a file that already holds results of
 * the same machine replaces just the rows it measured (and drops scenarios the bench no longer has);
 * anything else starts the file over.
 */
export function mergeInto(existing: BenchDocument | null, fresh: BenchDocument, ran: { scenarios: ScenarioName[]; dbs: string[] }): BenchDocument {
  const sameMachine =
    existing !== null &&
    existing.schema === 1 &&
    existing.smoke === fresh.smoke &&
    existing.machine?.cpuModel === fresh.machine.cpuModel &&
    existing.machine?.cores === fresh.machine.cores;
  if (!sameMachine) return fresh;
  // only scenarios the bench still has: the rows of a removed one (the per-call `invoke`, before
  // warm instances) describe a platform that no longer exists
  const scenarios: BenchDocument['scenarios'] = Object.fromEntries(
    Object.entries(existing.scenarios).filter(([name]) => (SCENARIOS as readonly string[]).includes(name)),
  );
  for (const name of ran.scenarios) {
    const now = fresh.scenarios[name];
    if (!now) continue;
    const kept = (scenarios[name]?.rows ?? []).filter((r) => r.db !== 'none' && !ran.dbs.includes(r.db));
    scenarios[name] = { ...now, rows: [...now.rows, ...kept] };
  }
  return { ...fresh, scenarios };
}

export function readDocument(file: string): BenchDocument | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as BenchDocument;
  } catch {
    return null;
  }
}

export function writeDocument(file: string, doc: BenchDocument): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
}
