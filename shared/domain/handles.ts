// Account handles: the first segment of every function URL (/fn/{handle}/{name}) and the second
// half of a function's host name ({name}--{handle}.FUNCTIONS_DOMAIN). A handle never holds "--" and
// never starts or ends with "-", so the last "--" of such a host name always separates the two.
import { z } from 'zod';

export const HANDLE_MAX = 39;
/** 1–39 of a-z, 0-9 and single dashes between them. */
export const HANDLE_PATTERN = /^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,38}$/;

export const handleSchema = z
  .string()
  .regex(HANDLE_PATTERN, 'must be 1-39 characters of a-z, 0-9 and single dashes, not starting or ending with a dash');

/** The handle an email suggests: its local part, reduced to what a handle may hold. */
export function handleFromEmail(email: string): string {
  const local = email.split('@')[0] ?? '';
  const reduced = local
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, HANDLE_MAX)
    .replace(/-+$/, '');
  return reduced === '' ? 'user' : reduced;
}

/** `base` with a numeric suffix, still within the length limit: alice, alice-2, alice-3, … */
export function withSuffix(base: string, n: number): string {
  if (n <= 1) return base;
  const suffix = `-${n}`;
  return `${base.slice(0, HANDLE_MAX - suffix.length).replace(/-+$/, '')}${suffix}`;
}

/** Unique handles for a list of emails, in order (the migration's backfill). */
export function deriveHandles(emails: string[]): string[] {
  const taken = new Set<string>();
  return emails.map((email) => {
    const base = handleFromEmail(email);
    let n = 1;
    while (taken.has(withSuffix(base, n))) n++;
    const handle = withSuffix(base, n);
    taken.add(handle);
    return handle;
  });
}
