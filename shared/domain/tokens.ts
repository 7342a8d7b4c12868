// API tokens: random bearer secrets of which only the sha256 is stored, each with a name and an
// expiry. Revoking one deletes its row. TokenCache answers the per-request question "whose token is
// this?" without a database round trip on every request.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { nowIso, toIso } from '../db/time.ts';
import { errors } from '../errors.ts';

const DAY_MS = 86_400_000;

/** The name of the tokens login and register hand out. */
export const LOGIN_TOKEN_NAME = 'login';

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** A token as its owner sees it: never the secret nor its hash. */
export interface TokenView {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string;
  /** the token this request was made with */
  current: boolean;
}

export interface IssuedToken {
  id: string;
  name: string;
  /** the secret, shown once */
  token: string;
  createdAt: string;
  expiresAt: string;
}

export async function issueToken(db: Db, userId: string, opts: { name: string; ttlDays: number }): Promise<IssuedToken> {
  const token = `cp_${randomBytes(32).toString('base64url')}`;
  const now = Date.now();
  const issued = {
    id: randomUUID(),
    name: opts.name,
    createdAt: new Date(now).toISOString(),
    expiresAt: new Date(now + opts.ttlDays * DAY_MS).toISOString(),
  };
  // Expired tokens are dropped as the owner gets new ones, so each login does not leave a row
  // behind for good (the list stays the tokens that still work).
  await db.knex('api_tokens').where({ user_id: userId }).where('expires_at', '<=', issued.createdAt).delete();
  await db.knex('api_tokens').insert({
    id: issued.id,
    user_id: userId,
    name: issued.name,
    token_hash: hashToken(token),
    created_at: issued.createdAt,
    expires_at: issued.expiresAt,
  });
  return { ...issued, token };
}

/** The owner's tokens that still work, newest first. */
export async function listTokens(db: Db, userId: string, currentTokenId?: string): Promise<TokenView[]> {
  const rows = await db
    .knex('api_tokens')
    .select('id', 'name', 'created_at', 'last_used_at', 'expires_at')
    .where({ user_id: userId })
    .where('expires_at', '>', nowIso())
    .orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'asc' }]);
  return rows.map((r) => ({
    id: r.id,
    name: r.name ?? LOGIN_TOKEN_NAME,
    createdAt: toIso(r.created_at)!,
    lastUsedAt: toIso(r.last_used_at),
    expiresAt: toIso(r.expires_at)!,
    current: r.id === currentTokenId,
  }));
}

/** Another user's token is "not found", exactly like a missing one. */
export async function revokeToken(db: Db, userId: string, tokenId: string): Promise<void> {
  const n = await db.knex('api_tokens').where({ id: tokenId, user_id: userId }).delete();
  if (n === 0) throw errors.notFound('token');
}

export interface TokenIdentity {
  userId: string;
  tokenId: string;
}

/** How long a token lookup is trusted without asking the database again. */
export const TOKEN_CACHE_MS = 5_000;
/** last_used_at is written at most this often per token: it is "roughly when", not an audit log. */
export const TOKEN_TOUCH_EVERY_MS = 60_000;
const TOKEN_CACHE_ENTRIES = 10_000;

export interface TokenCacheOptions {
  cacheMs?: number;
  touchEveryMs?: number;
  /** a last_used_at write failed (it happens off the request path, so nobody else would hear) */
  onTouchError?: (err: unknown) => void;
}

/**
 * Token lookups cached for a few seconds, so a warm invocation makes no database round trip for
 * its bearer token; a token revoked in the database stops working within TOKEN_CACHE_MS, and an
 * expiring one is cached no later than its expiry. Keyed by the token's hash (no secret is kept),
 * bounded, and unknown tokens are never cached (a flood of random tokens cannot fill it).
 *
 * last_used_at is refreshed from the lookups that reach the database (at most one per token per
 * TOKEN_CACHE_MS), only when it is older than TOKEN_TOUCH_EVERY_MS, and without holding up the
 * request; the update's own condition keeps several API processes from all writing it.
 */
export class TokenCache {
  private readonly entries = new Map<string, TokenIdentity & { until: number }>();
  private readonly touching = new Map<string, Promise<void>>();
  /** lookups under way, by token hash: a burst of requests with one token makes one round trip */
  private readonly looking = new Map<string, Promise<TokenIdentity | null>>();
  /** bumped by forget(): a lookup that raced with a revocation here is not cached */
  private generation = 0;
  private readonly cacheMs: number;
  private readonly touchEveryMs: number;

  constructor(
    private readonly db: Db,
    private readonly opts: TokenCacheOptions = {},
  ) {
    this.cacheMs = opts.cacheMs ?? TOKEN_CACHE_MS;
    this.touchEveryMs = opts.touchEveryMs ?? TOKEN_TOUCH_EVERY_MS;
  }

  async authenticate(token: string): Promise<TokenIdentity | null> {
    if (!token.startsWith('cp_') || token.length > 200) return null;
    const key = hashToken(token);
    const now = performance.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return { userId: hit.userId, tokenId: hit.tokenId };
    this.entries.delete(key);
    let lookup = this.looking.get(key);
    if (!lookup) {
      lookup = this.lookup(key, now).finally(() => this.looking.delete(key));
      this.looking.set(key, lookup);
    }
    return lookup;
  }

  private async lookup(key: string, now: number): Promise<TokenIdentity | null> {
    const generation = this.generation;
    const row = await this.db
      .knex('api_tokens')
      .select('id', 'user_id', 'expires_at', 'last_used_at')
      .where({ token_hash: key })
      .first();
    if (!row) return null;
    // A token without an expiry (none is written so) is refused rather than trusted forever.
    const msLeft = Date.parse(toIso(row.expires_at) ?? '') - Date.now();
    if (!(msLeft > 0)) return null;
    const identity: TokenIdentity = { userId: row.user_id, tokenId: row.id };
    if (generation === this.generation) this.entries.set(key, { ...identity, until: now + Math.min(this.cacheMs, msLeft) });
    if (this.entries.size > TOKEN_CACHE_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    this.touch(row.id, toIso(row.last_used_at));
    return identity;
  }

  /** Drops a revoked token at once in this process (other processes take up to TOKEN_CACHE_MS). */
  forget(tokenId: string): void {
    this.generation++;
    this.looking.clear();
    for (const [key, entry] of this.entries) if (entry.tokenId === tokenId) this.entries.delete(key);
  }

  /** Resolves once the last_used_at writes under way have finished. */
  async settled(): Promise<void> {
    await Promise.all([...this.touching.values()]);
  }

  private touch(tokenId: string, lastUsedAt: string | null): void {
    const cutoff = new Date(Date.now() - this.touchEveryMs).toISOString();
    if ((lastUsedAt !== null && lastUsedAt > cutoff) || this.touching.has(tokenId)) return;
    const write = this.db
      .knex('api_tokens')
      .where({ id: tokenId })
      .where((q) => q.whereNull('last_used_at').orWhere('last_used_at', '<=', cutoff))
      .update({ last_used_at: nowIso() })
      .then(
        () => undefined,
        (err: unknown) => this.opts.onTouchError?.(err),
      )
      .finally(() => this.touching.delete(tokenId));
    this.touching.set(tokenId, write);
  }
}
