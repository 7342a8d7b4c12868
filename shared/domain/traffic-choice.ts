// Which version one request lands on, when a function has a candidate beside its live version.
//   not sticky: each request independently, with the candidate's probability;
//   sticky: by a hash of the caller's traffic key and the candidate, so a key stays on one version
//   for as long as the split is unchanged. Raising the candidate's share only moves keys from the
//   live version to the candidate, never back (a key's bucket is fixed; the threshold moves).
import { createHash, randomBytes } from 'node:crypto';
import type { LiveDeployment, LiveRoute } from './live-routes.ts';

/** The header a caller sends to keep its requests on one version of a sticky split. */
export const TRAFFIC_KEY_HEADER = 'x-traffic-key';
/** The cookie an endpoint sets when a sticky split applies and the caller sent no key. */
export const TRAFFIC_COOKIE = 'cp_traffic';
const MAX_KEY_CHARS = 200;

export interface TrafficChoice {
  deployment: LiveDeployment;
  role: 'live' | 'candidate';
}

/** The bucket (0–9999) a traffic key falls in for a given candidate. */
export function stickyBucket(key: string, candidateDeploymentId: string): number {
  const h = createHash('sha256').update(candidateDeploymentId).update('\0').update(key).digest();
  return h.readUInt32BE(0) % 10_000;
}

/** The live version, or the candidate for its share of the traffic. Null: nothing is live. */
export function chooseDeployment(route: LiveRoute, trafficKey: string | null, random: () => number = Math.random): TrafficChoice | null {
  const { live, candidate } = route;
  if (!live) return null;
  if (!candidate || candidate.percent <= 0) return { deployment: live, role: 'live' };
  if (candidate.percent >= 100) return { deployment: candidate, role: 'candidate' };
  const threshold = candidate.percent * 100;
  const bucket = route.sticky && trafficKey ? stickyBucket(trafficKey, candidate.deploymentId) : Math.floor(random() * 10_000);
  return bucket < threshold ? { deployment: candidate, role: 'candidate' } : { deployment: live, role: 'live' };
}

/** Whether the split would use a traffic key that the caller did not send (an endpoint then sets the cookie). */
export function needsTrafficKey(route: LiveRoute): boolean {
  return route.sticky && route.candidate !== null && route.candidate.percent > 0 && route.candidate.percent < 100;
}

/** A caller's traffic key, bounded; null when it sent none. */
export function normalizeTrafficKey(value: string | string[] | undefined | null): string | null {
  const v = Array.isArray(value) ? value[0] : value;
  if (typeof v !== 'string') return null;
  const trimmed = v.trim();
  return trimmed === '' ? null : trimmed.slice(0, MAX_KEY_CHARS);
}

/** The cp_traffic cookie's value in a Cookie header, if any. */
export function trafficKeyFromCookie(cookieHeader: string | undefined): string | null {
  if (!cookieHeader) return null;
  for (const part of cookieHeader.split(';')) {
    const eq = part.indexOf('=');
    // the value is used as it came (a key only needs to be stable), never decoded: bad escapes cannot throw
    if (eq !== -1 && part.slice(0, eq).trim() === TRAFFIC_COOKIE) return normalizeTrafficKey(part.slice(eq + 1));
  }
  return null;
}

export function newTrafficKey(): string {
  return randomBytes(12).toString('base64url');
}
