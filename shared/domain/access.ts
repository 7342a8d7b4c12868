// Who may call a function's endpoint, set per function (PATCH /api/functions/{id} {access}):
//   private  the owner's bearer token (the default: a new function is not on the internet)
//   key      a function key (function-keys.ts), or the owner's token
//   public   anyone
// Pinning a version (/fn/{handle}/{name}@v{N}) needs the owner's token or a key whatever the mode.
import { z } from 'zod';
import type { Db } from '../db/knex.ts';
import { nowIso } from '../db/time.ts';
import { errors } from '../errors.ts';
import { announceFunctionChanged } from './function-changes.ts';

export const ACCESS_MODES = ['private', 'key', 'public'] as const;
export type AccessMode = (typeof ACCESS_MODES)[number];
export const accessSchema = z.enum(ACCESS_MODES);

export function accessOf(value: unknown): AccessMode {
  return value === 'key' || value === 'public' ? value : 'private';
}

/**
 * Sets a function's settings (its access mode; whether deploys wait for approval); every serving
 * process applies them once the change is announced.
 */
export async function setFunctionSettings(db: Db, userId: string, functionId: string, settings: { access?: AccessMode; requireApproval?: boolean }): Promise<void> {
  await db.knex.transaction(async (trx) => {
    const n = await trx('functions')
      .where({ id: functionId, user_id: userId })
      .update({
        ...(settings.access !== undefined ? { access: settings.access } : {}),
        ...(settings.requireApproval !== undefined ? { require_approval: settings.requireApproval } : {}),
        updated_at: nowIso(),
      });
    if (n === 0) throw errors.functionNotFound();
    await announceFunctionChanged(db, trx, functionId);
  });
}
