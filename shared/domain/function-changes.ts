// "Something about this function changed that the serving processes cache": its live version, the
// status of that version, or the function itself (deleted). Announced inside the transaction that
// makes the change; delivered when it commits: to this process at once, to other processes through
// PostgreSQL NOTIFY (their PgListener), so an activation is seen everywhere within milliseconds.
import { EventEmitter } from 'node:events';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import type { LiveDeployment } from './live-routes.ts';

export const FUNCTION_CHANGED_CHANNEL = 'containerpub_function_changed';

const local = new EventEmitter();
local.setMaxListeners(0);

export async function announceFunctionChanged(db: Db, trx: Knex.Transaction, functionId: string): Promise<void> {
  // PostgreSQL folds identical notifications of one transaction into one
  if (db.dialect === 'pg') await trx.raw('SELECT pg_notify(?, ?)', [FUNCTION_CHANGED_CHANNEL, functionId]);
  trx.executionPromise.then(() => announceCommittedLocally(functionId), () => {});
}

/**
 * What a change made of the function's route, when the change knows it whole: this process's
 * routing cache takes it as it is instead of reading the route again (other processes still read).
 */
export interface KnownRouteChange {
  /** the version now live; the candidate is gone; nothing else of the route changed */
  live: LiveDeployment;
  /**
   * the function's live intent after the change (functions.active_intent_seq): changes committed
   * one after the other may reach this process in another order, and the newest intent is live
   */
  intent: number;
}

/**
 * The local half of announceFunctionChanged, for a change that has committed and whose NOTIFY the
 * caller sent itself (a statement that carries `pg_notify` along with its writes), or on SQLite.
 */
export function announceCommittedLocally(functionId: string, change?: KnownRouteChange): void {
  local.emit('changed', functionId, change);
}

/** Changes committed by this process; returns the unsubscribe function. */
export function onFunctionChangedLocally(listener: (functionId: string, change?: KnownRouteChange) => void): () => void {
  local.on('changed', listener);
  return () => local.off('changed', listener);
}
