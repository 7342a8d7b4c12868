// Function keys: bearer secrets that call one function's endpoint when its access is `key`. Only the
// sha256 is stored; the key is shown once, at creation. FunctionKeyCache answers "which function
// does this key open?" without a database round trip per request; a deleted key stops working
// within KEY_CACHE_MS everywhere (at once in the process that deleted it).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { num } from '../db/dialect.ts';
import { nowIso, toIso } from '../db/time.ts';
import { errors, QuotaError } from '../errors.ts';

export const KEY_PREFIX = 'fk_';
/** Keys one function may have: enough for every caller to get its own, bounded all the same. */
export const MAX_KEYS_PER_FUNCTION = 100;
/** How long a key lookup is trusted (the issue: a deleted key stops working within 5 s). */
export const KEY_CACHE_MS = 4_000;
const KEY_CACHE_ENTRIES = 10_000;
/** last_used_at is "roughly when": written at most this often per key. */
const KEY_TOUCH_EVERY_MS = 60_000;

export interface FunctionKeyView {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
}

export interface IssuedFunctionKey {
  id: string;
  name: string;
  /** the secret, shown once */
  key: string;
  createdAt: string;
}

const hashKey = (key: string) => createHash('sha256').update(key).digest('hex');

export async function createFunctionKey(db: Db, functionId: string, name: string): Promise<IssuedFunctionKey> {
  const key = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  const issued = { id: randomUUID(), name, createdAt: nowIso() };
  await db.knex.transaction(async (trx) => {
    // under the function's row lock, so that concurrent creations cannot both take the last slot
    await trx('functions').where({ id: functionId }).update({ updated_at: trx.raw('updated_at') });
    const row = await trx('function_keys').where({ function_id: functionId }).count({ n: '*' }).first();
    if (num(row?.n) >= MAX_KEYS_PER_FUNCTION) {
      throw new QuotaError('MAX_KEYS_PER_FUNCTION', MAX_KEYS_PER_FUNCTION, `this function has ${num(row?.n)} keys, the limit is ${MAX_KEYS_PER_FUNCTION}: delete one first`);
    }
    await trx('function_keys').insert({ id: issued.id, function_id: functionId, name, key_hash: hashKey(key), created_at: issued.createdAt });
  });
  return { ...issued, createdAt: toIso(issued.createdAt)!, key };
}

export async function listFunctionKeys(db: Db, functionId: string): Promise<FunctionKeyView[]> {
  const rows = await db
    .knex('function_keys')
    .select('id', 'name', 'created_at', 'last_used_at')
    .where({ function_id: functionId })
    .orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'asc' }]);
  return rows.map((r) => ({ id: r.id, name: r.name, createdAt: toIso(r.created_at)!, lastUsedAt: toIso(r.last_used_at) }));
}

export async function deleteFunctionKey(db: Db, functionId: string, keyId: string): Promise<void> {
  const n = await db.knex('function_keys').where({ id: keyId, function_id: functionId }).delete();
  if (n === 0) throw errors.notFound('key');
}

export class FunctionKeyCache {
  private readonly entries = new Map<string, { keyId: string; functionId: string; until: number }>();
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly db: Db,
    private readonly onTouchError: (err: unknown) => void = () => {},
    private readonly cacheMs = KEY_CACHE_MS,
  ) {}

  /** Whether `key` opens `functionId`. Unknown keys are never cached (a flood cannot fill it). */
  async opens(key: string, functionId: string): Promise<boolean> {
    if (!key.startsWith(KEY_PREFIX) || key.length > 200) return false;
    const hash = hashKey(key);
    const now = performance.now();
    let hit = this.entries.get(hash);
    if (!hit || hit.until <= now) {
      this.entries.delete(hash);
      const row = await this.db.knex('function_keys').select('id', 'function_id').where({ key_hash: hash }).first();
      if (!row) return false;
      hit = { keyId: row.id, functionId: row.function_id, until: now + this.cacheMs };
      this.entries.set(hash, hit);
      if (this.entries.size > KEY_CACHE_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
      this.touch(row.id);
    }
    return hit.functionId === functionId;
  }

  /** A key deleted in this process stops working here at once. */
  forget(keyId: string): void {
    for (const [hash, entry] of this.entries) if (entry.keyId === keyId) this.entries.delete(hash);
  }

  private touch(keyId: string): void {
    const now = Date.now();
    if (now - (this.touched.get(keyId) ?? 0) < KEY_TOUCH_EVERY_MS) return;
    this.touched.set(keyId, now);
    if (this.touched.size > KEY_CACHE_ENTRIES) this.touched.delete(this.touched.keys().next().value!);
    this.db
      .knex('function_keys')
      .where({ id: keyId })
      .update({ last_used_at: nowIso() })
      .catch((err: unknown) => this.onTouchError(err));
  }
}
