// One holder at a time across every process sharing the database (cleanup runs). PostgreSQL: a
// session advisory lock on a dedicated connection, released by the server if the holder dies.
// SQLite: a lock row with a lease, renewed while held, taken over once it expires.
import { createHash } from 'node:crypto';
import os from 'node:os';
import type { Db } from './knex.ts';
import { nowIso } from './time.ts';

export interface HeldLock {
  release(): Promise<void>;
}

/** A stable 63-bit key for pg_advisory_lock derived from the lock's name. */
function holderIsDead(holder: string): boolean {
  const [host, pid] = holder.split('/');
  if (host !== os.hostname() || !/^\d+$/.test(pid ?? '') || Number(pid) === process.pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function advisoryKey(name: string): string {
  const h = createHash('sha256').update(`containerpub:${name}`).digest();
  return (h.readBigInt64BE(0) & 0x7fffffffffffffffn).toString();
}

export async function tryAcquireLock(
  db: Db,
  name: string,
  holder: string,
  opts: { leaseMs?: number } = {},
): Promise<HeldLock | null> {
  if (db.dialect === 'pg') {
    const client = db.knex.client as { acquireConnection(): Promise<unknown>; releaseConnection(c: unknown): Promise<void> };
    const conn = await client.acquireConnection();
    const key = advisoryKey(name);
    try {
      const res = await db.knex.raw('SELECT pg_try_advisory_lock(?::bigint) AS locked', [key]).connection(conn);
      if (!res.rows[0].locked) {
        await client.releaseConnection(conn);
        return null;
      }
    } catch (err) {
      await client.releaseConnection(conn);
      throw err;
    }
    return {
      async release() {
        try {
          await db.knex.raw('SELECT pg_advisory_unlock(?::bigint)', [key]).connection(conn);
        } finally {
          await client.releaseConnection(conn);
        }
      },
    };
  }

  const leaseMs = opts.leaseMs ?? 30_000;
  // A SQLite file is only shared by processes of one host, so a holder that died (kill -9) is seen
  // at once: its pid is gone. The lease covers whatever that check cannot see.
  holder = `${os.hostname()}/${process.pid}/${holder}`;
  await db.knex('platform_locks').insert({ name, holder: null, expires_at: null }).onConflict('name').ignore();
  const lease = () => new Date(Date.now() + leaseMs).toISOString();
  const row = await db.knex('platform_locks').where({ name }).first('holder');
  const dead = row?.holder && holderIsDead(row.holder) ? (row.holder as string) : null;
  const taken = await db.knex('platform_locks')
    .where({ name })
    .andWhere((q) => {
      q.whereNull('holder').orWhere('expires_at', '<', nowIso());
      if (dead) q.orWhere('holder', dead);
    })
    .update({ holder, expires_at: lease() });
  if (taken === 0) return null;
  const renewal = setInterval(() => {
    db.knex('platform_locks').where({ name, holder }).update({ expires_at: lease() }).catch(() => {});
  }, Math.max(250, Math.floor(leaseMs / 3)));
  renewal.unref();
  return {
    async release() {
      clearInterval(renewal);
      await db.knex('platform_locks').where({ name, holder }).update({ holder: null, expires_at: null });
    },
  };
}
