// Accounts and API tokens. Passwords are scrypt-hashed with a per-user salt; tokens are random and
// only their sha256 is stored.
import { createHash, randomBytes, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Db } from '../db/knex.ts';
import { isUniqueViolation } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number, opts: object) => Promise<Buffer>;
const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32 };

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keyLen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, key] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !key) return false;
  const expected = Buffer.from(key, 'base64');
  const actual = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return timingSafeEqual(actual, expected);
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

async function issueToken(db: Db, userId: string): Promise<string> {
  const token = `cp_${randomBytes(32).toString('base64url')}`;
  await db.knex('api_tokens').insert({
    id: randomUUID(),
    user_id: userId,
    token_hash: hashToken(token),
    created_at: nowIso(),
  });
  return token;
}

export interface Session {
  userId: string;
  token: string;
}

export async function registerUser(db: Db, email: string, password: string): Promise<Session> {
  const userId = randomUUID();
  const passwordHash = await hashPassword(password);
  try {
    await db.knex('users').insert({
      id: userId,
      email: email.toLowerCase(),
      password_hash: passwordHash,
      created_at: nowIso(),
    });
  } catch (err) {
    if (isUniqueViolation(err)) throw errors.emailTaken();
    throw err;
  }
  return { userId, token: await issueToken(db, userId) };
}

export async function loginUser(db: Db, email: string, password: string): Promise<Session> {
  const user = await db.knex('users').where({ email: email.toLowerCase() }).first();
  // Hash even for an unknown email, so response time does not reveal which emails exist.
  const ok = user
    ? await verifyPassword(password, user.password_hash)
    : (await hashPassword(password), false);
  if (!user || !ok) throw errors.invalidCredentials();
  return { userId: user.id, token: await issueToken(db, user.id) };
}

async function userOfTokenHash(db: Db, tokenHash: string): Promise<string | null> {
  const row = await db.knex('api_tokens').select('user_id').where({ token_hash: tokenHash }).first();
  return row ? (row.user_id as string) : null;
}

/** How long a token lookup is trusted without asking the database again. */
export const TOKEN_CACHE_MS = 5_000;
const TOKEN_CACHE_ENTRIES = 10_000;

/**
 * Token lookups cached for a few seconds, so a warm invocation makes no database round trip for
 * its bearer token; a token deleted from the database stops working within TOKEN_CACHE_MS. Keyed
 * by the token's hash (no secret is kept), bounded, and unknown tokens are never cached (a flood
 * of random tokens cannot fill it).
 */
export class TokenCache {
  private readonly entries = new Map<string, { userId: string; until: number }>();

  constructor(private readonly db: Db) {}

  async authenticate(token: string): Promise<string | null> {
    if (!token.startsWith('cp_') || token.length > 200) return null;
    const key = hashToken(token);
    const now = performance.now();
    const hit = this.entries.get(key);
    if (hit && hit.until > now) return hit.userId;
    const userId = await userOfTokenHash(this.db, key);
    this.entries.delete(key);
    if (userId) {
      this.entries.set(key, { userId, until: now + TOKEN_CACHE_MS });
      if (this.entries.size > TOKEN_CACHE_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    }
    return userId;
  }
}
