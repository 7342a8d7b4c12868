// Sign-up and login attempts, limited per client address and per email, in this process's memory.
// Each attempt costs an scrypt hash, so the limit guards the CPU as well as the passwords. Replicas
// each keep their own counts: N API processes allow up to N times the limit.
import type { Context } from 'hono';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Config } from '../../shared/config.ts';
import { errors } from '../../shared/errors.ts';

/** Keys remembered per limiter: a flood of random emails or addresses cannot grow memory past it. */
export const RATE_LIMIT_MAX_KEYS = 20_000;

/**
 * Token buckets by key: `perMinute` attempts at once, refilled continuously at that rate. The map
 * is bounded and kept in least-recently-used order, so when it is full the key dropped is the one
 * left alone longest: its bucket is the most likely to be full again, and forgetting a full bucket
 * changes nothing. A key under attack is used all the time and stays.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly perMs: number;

  constructor(
    readonly perMinute: number,
    private readonly maxKeys = RATE_LIMIT_MAX_KEYS,
  ) {
    this.perMs = perMinute / 60_000;
  }

  get size(): number {
    return this.buckets.size;
  }

  private level(key: string, now: number): number {
    const b = this.buckets.get(key);
    return b ? Math.min(this.perMinute, b.tokens + (now - b.at) * this.perMs) : this.perMinute;
  }

  /** Seconds until `key` may try again (0: now). */
  waitSeconds(key: string, now = performance.now()): number {
    const level = this.level(key, now);
    if (level >= 1) return 0;
    // less a hair: floating point turns an exact 1 s into 1.0000000002
    return Math.max(1, Math.ceil((1 - level) / this.perMs / 1000 - 1e-9));
  }

  take(key: string, now = performance.now()): void {
    const tokens = this.level(key, now) - 1;
    this.buckets.delete(key);
    this.buckets.set(key, { tokens, at: now });
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

/**
 * The address the request came from: the socket's peer, or with TRUST_PROXY=on the last entry of
 * X-Forwarded-For (the one the proxy in front of us appended; earlier entries are whatever the
 * client chose to send).
 */
export function clientAddress(c: Context, trustProxy: boolean): string {
  if (trustProxy) {
    const forwarded = (c.req.header('x-forwarded-for') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    const last = forwarded.at(-1);
    if (last) return last.slice(0, 100);
  }
  return getConnInfo(c).remote.address ?? 'unknown';
}

export type AuthAttemptLimit = (c: Context, email: string) => void;

/**
 * One attempt at sign-up or login. Every attempt counts, whether the email exists or the password
 * was right, so neither the count nor the 429 says anything about an account. An attempt refused
 * here costs nothing, in either bucket.
 */
export function authAttemptLimit(config: Config['auth']): AuthAttemptLimit {
  const byAddress = config.rateLimitPerAddress > 0 ? new RateLimiter(config.rateLimitPerAddress) : null;
  const byEmail = config.rateLimitPerEmail > 0 ? new RateLimiter(config.rateLimitPerEmail) : null;
  return (c, email) => {
    const now = performance.now();
    const address = clientAddress(c, config.trustProxy);
    const key = email.trim().toLowerCase();
    const wait = Math.max(byAddress?.waitSeconds(address, now) ?? 0, byEmail?.waitSeconds(key, now) ?? 0);
    if (wait > 0) throw errors.rateLimited(wait);
    byAddress?.take(address, now);
    byEmail?.take(key, now);
  };
}
