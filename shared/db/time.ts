// Timestamps cross the database boundary here only: written as ISO-8601 UTC strings (valid for
// PostgreSQL timestamptz and sortable as text on SQLite), read back from Date, string or number.

export function nowIso(): string {
  return new Date().toISOString();
}

export function isoAfter(ms: number, from = Date.now()): string {
  return new Date(from + ms).toISOString();
}

/** What toISOString() writes, and so what SQLite holds: already the answer, not parsed again. */
const CANONICAL_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export function toIso(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string' && CANONICAL_ISO.test(value)) return value;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'number') return new Date(value).toISOString();
  const s = String(value);
  const d = new Date(s.includes('T') || s.endsWith('Z') ? s : s.replace(' ', 'T') + 'Z');
  return Number.isNaN(d.getTime()) ? s : d.toISOString();
}
