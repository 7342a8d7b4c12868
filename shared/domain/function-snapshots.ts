// What this process last committed to a function's row when it allocated versions (PostgreSQL):
// the row as its increment returned it, the row's version (xmin, the id of the transaction that
// wrote it), and the configuration of its latest version. A group of deploys planned from these
// needs no read before its writes, so it commits in one round trip instead of two
// (versions.ts, allocateGroupPostgres): under load the lock a group holds is held for that one
// round trip only.
//
// A snapshot is a guess, never the truth: the group's message checks, after taking the locks,
// that every row still has the version remembered here, and writes nothing otherwise. Any other
// writer of the row (another replica's deploy, an activation, a settings change, a delete) gives
// it a new xmin, and the group then reads first, as it would without a snapshot. A new version
// always goes through the row (its number is the row's last_version), so an unchanged row also
// means an unchanged latest configuration. The check errs towards reading first: anything that
// copies the row without changing it (a dump and restore, say) at worst gives it another xmin. A
// stale snapshot could pass only if the row were rewritten by a transaction with the very id it
// remembers, which xmin's 32 bits bring round only ~4 billion transactions later.
import type { Db } from '../db/knex.ts';
import type { FunctionRow } from './model.ts';

export interface FunctionSnapshot {
  row: FunctionRow;
  /** the row's xmin as text: any committed write of the row since changes it */
  rowVersion: string;
  /** the configuration of the function's latest version (undefined: none recorded) */
  latestConfig: string | undefined;
}

/**
 * What the snapshots of one process may hold at most, the least recently written going first: a
 * number of them, and their weight in bytes (a configuration may be megabytes: 100 variables of
 * 32 KiB each, of each kind).
 */
const MAX_SNAPSHOTS = 10_000;
const MAX_SNAPSHOT_BYTES = 32 * 1024 * 1024;
/** What a snapshot weighs besides its configuration (its row, roughly). */
const ROW_BYTES = 1024;

const weight = (snapshot: FunctionSnapshot) => ROW_BYTES + (snapshot.latestConfig?.length ?? 0);

export class FunctionSnapshots {
  /** by functionKey (account and name), oldest write first */
  private readonly byKey = new Map<string, FunctionSnapshot>();
  /** the functions of the groups in progress: their snapshots are about to be outdated */
  private readonly inProgress = new Map<string, number>();
  private bytes = 0;

  constructor(private readonly limits: { max: number; maxBytes: number } = { max: MAX_SNAPSHOTS, maxBytes: MAX_SNAPSHOT_BYTES }) {}

  /**
   * The snapshots of every key, marked as in progress until release() — or null (nothing marked)
   * when one is unknown or already in progress in another group (which will change it).
   */
  take(keys: readonly string[]): FunctionSnapshot[] | null {
    const found: FunctionSnapshot[] = [];
    for (const key of keys) {
      const snapshot = this.byKey.get(key);
      if (!snapshot || this.inProgress.has(key)) return null;
      found.push(snapshot);
    }
    this.hold(keys);
    return found;
  }

  /** Marks keys as in progress in a group that reads first (its commit outdates their snapshots). */
  hold(keys: readonly string[]): void {
    for (const key of keys) this.inProgress.set(key, (this.inProgress.get(key) ?? 0) + 1);
  }

  release(keys: readonly string[]): void {
    for (const key of keys) {
      const n = (this.inProgress.get(key) ?? 1) - 1;
      if (n > 0) this.inProgress.set(key, n);
      else this.inProgress.delete(key);
    }
  }

  /** What a group committed to the function, as its statement returned it. */
  remember(key: string, snapshot: FunctionSnapshot): void {
    this.drop(key);
    // one heavier than all the room: its function's groups read first
    if (weight(snapshot) > this.limits.maxBytes) return;
    this.byKey.set(key, snapshot);
    this.bytes += weight(snapshot);
    while (this.byKey.size > this.limits.max || this.bytes > this.limits.maxBytes) this.drop(this.byKey.keys().next().value!);
  }

  /** The snapshots of a group that failed: whatever their rows hold now is unknown here. */
  forget(keys: readonly string[]): void {
    for (const key of keys) this.drop(key);
  }

  /** How many snapshots are kept, and what they weigh. */
  get size(): { snapshots: number; bytes: number } {
    return { snapshots: this.byKey.size, bytes: this.bytes };
  }

  private drop(key: string): void {
    const snapshot = this.byKey.get(key);
    if (!snapshot) return;
    this.byKey.delete(key);
    this.bytes -= weight(snapshot);
  }
}

const perDb = new WeakMap<Db, FunctionSnapshots>();

export function functionSnapshots(db: Db): FunctionSnapshots {
  let snapshots = perDb.get(db);
  if (!snapshots) perDb.set(db, (snapshots = new FunctionSnapshots()));
  return snapshots;
}
