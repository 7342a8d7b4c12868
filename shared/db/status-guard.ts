// A write (or read) of one row by its primary key, guarded by the status the row must still have:
// `WHERE id = ? AND (status = ?) IS TRUE`, not `… AND status = ?`.
//
// `status = ?` can be answered from the index on (status, lease_expires_at), and PostgreSQL takes
// that index whenever its statistics make the status look rare: an ANALYZE made while no upload
// was pending estimates one pending row, however many a burst of deploys has made since (until
// autovacuum's next ANALYZE). The complete's UPDATE then read every pending upload to find its own:
// 5.7 ms for 24,000 of them in the bench, against 0.1 ms by the key. `IS TRUE` is a test no index
// answers, so the key is the only way in; it means the same as `=` here (a NULL status is never
// the one asked for). tests/deploy-flow.test.ts plans it with such statistics.
import type { Knex } from 'knex';

/** `query` (already narrowed to one row by its key) limited to rows still in `status`. */
export function inStatus<Q extends Knex.QueryBuilder>(query: Q, status: string): Q {
  return query.whereRaw('(status = ?) IS TRUE', [status]) as Q;
}
