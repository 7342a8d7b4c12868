// Plain-text formatting for human output: aligned tables, sizes, ages.

/** Left-aligned columns separated by two spaces; `prefix` (same width for every row) marks rows. */
export function table(header: string[], rows: string[][], opts: { marks?: string[] } = {}): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const markWidth = opts.marks ? Math.max(1, ...opts.marks.map((m) => m.length)) : 0;
  const line = (cells: string[], mark: string) => {
    const text = cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
    return (opts.marks ? `${mark.padEnd(markWidth)} ` : '') + text;
  };
  return [line(header, ''), ...rows.map((r, i) => line(r, opts.marks?.[i] ?? ''))].map((l) => l.trimEnd()).join('\n');
}

/** Binary units, as the limits are stated (50 MiB = 52428800 bytes). */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (n < 1024) return `${n} B`;
  let value = n;
  let unit = 'B';
  for (const u of ['KiB', 'MiB', 'GiB']) {
    if (value < 1024) break;
    value /= 1024;
    unit = u;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${unit}`;
}

/** "12s ago", "5m ago", "3h ago", "2d ago"; absolute date past a month. */
export function formatAge(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  if (s < 30 * 86400) return `${Math.floor(s / 86400)}d ago`;
  return iso.slice(0, 10);
}

/** "2025-11-25 10:40:12" in UTC, for log lines. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  return iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, '');
}

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 12) : '-';
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * A build waiting out its backoff: "retrying in 8 s (1 attempt spent): <the error>". An outage of
 * S3, the registry or the engine spends no attempt, so the count can stay at 0.
 */
export function formatRetry(d: { attempts: number; error: string | null; nextAttemptAt: string | null }, now = Date.now()): string | null {
  if (!d.nextAttemptAt) return null;
  const inS = Math.max(0, Math.ceil((Date.parse(d.nextAttemptAt) - now) / 1000));
  return `retrying in ${inS} s (${plural(d.attempts, 'attempt')} spent)${d.error ? `: ${d.error}` : ''}`;
}
