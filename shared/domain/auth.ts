// Accounts. Passwords are scrypt-hashed with a per-user salt; the tokens a login hands out are in
// tokens.ts.
import { randomBytes, randomUUID, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { z } from 'zod';
import type { Db } from '../db/knex.ts';
import { isUniqueViolationOn } from '../db/dialect.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { handleFromEmail, handleSchema, withSuffix } from './handles.ts';
import { issueToken, LOGIN_TOKEN_NAME } from './tokens.ts';

/** What a new account needs, wherever it is made (sign-up, `npm run users -- add`). */
export const newAccountSchema = z.object({
  email: z.email('must be an email address').max(320),
  password: z.string().min(8, 'must be at least 8 characters').max(1024),
  /** the first segment of the account's function URLs; derived from the email when absent */
  handle: handleSchema.optional(),
});

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

export interface Session {
  userId: string;
  token: string;
}

export interface SessionOptions {
  /** lifetime of the token handed out (TOKEN_TTL_DAYS) */
  tokenTtlDays: number;
  /** the name the token is listed under (default "login"; the dashboard's sign-in: "browser") */
  tokenName?: string;
}

export interface Account {
  userId: string;
  email: string;
  handle: string;
}

/** Derived handles tried with a numeric suffix before a random one. */
const DERIVED_HANDLE_TRIES = 5;

/**
 * A new account without a session (the operator's `npm run users -- add`, and sign-up). A chosen
 * handle that is taken is a 409; a derived one moves on to the next free suffix.
 */
export async function createUser(db: Db, email: string, password: string, handle?: string): Promise<Account> {
  const userId = randomUUID();
  const passwordHash = await hashPassword(password);
  const base = handle ?? handleFromEmail(email);
  for (let attempt = 1; ; attempt++) {
    const candidate =
      handle !== undefined ? handle : attempt <= DERIVED_HANDLE_TRIES ? withSuffix(base, attempt) : withSuffix(base, 1000 + randomBytes(3).readUIntBE(0, 3));
    try {
      await db.knex('users').insert({
        id: userId,
        email: email.toLowerCase(),
        handle: candidate,
        password_hash: passwordHash,
        created_at: nowIso(),
      });
      return { userId, email: email.toLowerCase(), handle: candidate };
    } catch (err) {
      if (isUniqueViolationOn(err, 'users', 'email')) throw errors.emailTaken();
      if (!isUniqueViolationOn(err, 'users', 'handle')) throw err;
      if (handle !== undefined) throw errors.handleTaken(handle);
      if (attempt > DERIVED_HANDLE_TRIES + 3) throw err;
    }
  }
}

async function openSession(db: Db, userId: string, opts: SessionOptions): Promise<Session> {
  const issued = await issueToken(db, userId, { name: opts.tokenName ?? LOGIN_TOKEN_NAME, ttlDays: opts.tokenTtlDays });
  return { userId, token: issued.token };
}

export async function registerUser(
  db: Db,
  account: { email: string; password: string; handle?: string },
  opts: SessionOptions,
): Promise<Session & { handle: string }> {
  const { userId, handle } = await createUser(db, account.email, account.password, account.handle);
  return { ...(await openSession(db, userId, opts)), handle };
}

export async function loginUser(db: Db, email: string, password: string, opts: SessionOptions): Promise<Session> {
  const user = await db.knex('users').where({ email: email.toLowerCase() }).first();
  // Hash even for an unknown email, so response time does not reveal which emails exist.
  const ok = user
    ? await verifyPassword(password, user.password_hash)
    : (await hashPassword(password), false);
  if (!user || !ok) throw errors.invalidCredentials();
  return openSession(db, user.id, opts);
}

export async function getUser(db: Db, userId: string): Promise<Account> {
  const user = await db.knex('users').select('id', 'email', 'handle').where({ id: userId }).first();
  if (!user) throw errors.notFound('user');
  return { userId: user.id, email: user.email, handle: user.handle };
}
